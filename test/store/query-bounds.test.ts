import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CLI, tempDir } from "../helpers/agent.js";

/**
 * The query commands stream: a store far bigger than their memory budget is read, time-ordered and printed
 * with a bounded peak RSS, and a huge --limit in text output works (it used to spread every row into
 * Math.max(...) and crash with "Maximum call stack size exceeded").
 */

vi.setConfig({ testTimeout: 600_000, hookTimeout: 300_000 });

const CUID = "0196f1c2-0000-7000-8000-0000000000aa";
const FILES = 4;
const LINES_PER_FILE = 250_000; // 1,000,000 lines of ~210 bytes: ~210 MB
const PAD = "x".repeat(120);
const T0 = Date.parse("2026-11-23T10:00:00.000Z");
/** Peak RSS the streaming commands must stay under; the old code held every match (>= 600 MB here). */
const RSS_BOUND_KIB = 300 * 1024;

let dir: string;

beforeAll(() => {
  dir = tempDir("ikon-query-bounds-");
  const store = join(dir, "store");
  mkdirSync(store, { recursive: true });
  // Interleaved times across files: line i of file k is at T0 + i*FILES + k ms, so only a real merge is in order.
  for (let k = 0; k < FILES; k++) {
    const fd = openSync(join(store, `app-${k}.log`), "w");
    let chunk = "";
    for (let i = 0; i < LINES_PER_FILE; i++) {
      const t = new Date(T0 + i * FILES + k).toISOString();
      chunk += `${t} INFO file=${k} n=${i} ${PAD}{"ikontainer_CUID":"${CUID}","svc":"big.shop"}\n`;
      if (chunk.length > 1 << 20) {
        writeSync(fd, chunk);
        chunk = "";
      }
    }
    writeSync(fd, chunk);
    closeSync(fd);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stderr: string;
  peakKiB: number;
  lines: number;
  ordered: boolean;
}

/** Runs the CLI; counts output lines and checks time order as they stream; peak RSS from /usr/bin/time. */
function runQuery(args: string[], timeCol: (line: string) => string | undefined): Promise<Run> {
  const child = spawn("/usr/bin/time", ["-f", "PEAK_KIB=%M", process.execPath, CLI, ...args], {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    if (stderr.length < 100_000) stderr += d.toString();
  });
  let rest = "";
  let lines = 0;
  let last = "";
  let ordered = true;
  child.stdout.on("data", (d: Buffer) => {
    const parts = (rest + d.toString()).split("\n");
    rest = parts.pop()!;
    for (const l of parts) {
      lines++;
      if (/^\d+\. /.test(l)) last = ""; // a trace hop header: time order holds within a hop
      const t = timeCol(l);
      if (t === undefined) continue;
      if (t < last) ordered = false;
      last = t;
    }
  });
  return new Promise((resolve) =>
    child.once("close", (code) => {
      const m = /PEAK_KIB=(\d+)/.exec(stderr);
      resolve({ code, stderr, peakKiB: m ? Number(m[1]) : Number.NaN, lines, ordered });
    }),
  );
}

describe("query commands on a store bigger than their memory budget", () => {
  it("logs --json streams every line in time order with bounded peak RSS", async () => {
    const r = await runQuery(
      ["logs", "--store", "store", "--state-dir", ".", "--cuid", CUID, "--json", "--limit", "100000000"],
      (l) => (l.startsWith("{") ? (JSON.parse(l) as { time: string }).time : undefined),
    );
    expect(r.stderr).not.toContain("RangeError");
    expect(r.code).toBe(0);
    expect(r.lines).toBe(FILES * LINES_PER_FILE);
    expect(r.ordered).toBe(true);
    console.log(
      `logs --json over ${FILES * LINES_PER_FILE} lines: peak RSS ${Math.round(r.peakKiB / 1024)} MiB`,
    );
    expect(r.peakKiB).toBeLessThan(RSS_BOUND_KIB);
  });

  it("logs text output with --limit 100000000 does not crash and stays bounded", async () => {
    const r = await runQuery(
      ["logs", "--store", "store", "--state-dir", ".", "--cuid", CUID, "--limit", "100000000"],
      (l) => (l.startsWith("20") ? l.slice(0, 24) : undefined),
    );
    expect(r.stderr).not.toContain("RangeError");
    expect(r.code).toBe(0);
    expect(r.lines).toBe(FILES * LINES_PER_FILE + 1); // + header
    expect(r.ordered).toBe(true);
    console.log(
      `logs text over ${FILES * LINES_PER_FILE} lines: peak RSS ${Math.round(r.peakKiB / 1024)} MiB`,
    );
    expect(r.peakKiB).toBeLessThan(RSS_BOUND_KIB);
  });

  it("trace streams the request's hops with bounded peak RSS", async () => {
    const r = await runQuery(["trace", "req-big", "--store", "trace-store", "--state-dir", "."], (l) =>
      l.startsWith("     20") ? l.slice(5, 29) : undefined,
    );
    expect(r.code).toBe(0);
    expect(r.lines).toBe(TRACE_LINES + 2); // two hop headers
    expect(r.ordered).toBe(true);
    console.log(`trace over ${TRACE_LINES} lines: peak RSS ${Math.round(r.peakKiB / 1024)} MiB`);
    expect(r.peakKiB).toBeLessThan(RSS_BOUND_KIB);
  });
});

const TRACE_LINES = 400_000;
beforeAll(() => {
  // two instances, one request, 400,000 lines of ~330 bytes (~130 MB): the hops interleave in time
  const store = join(dir, "trace-store");
  mkdirSync(store, { recursive: true });
  for (const [k, cuid] of [
    [0, "0196f1c2-0000-7000-8000-0000000000b0"],
    [1, "0196f1c2-0000-7000-8000-0000000000b1"],
  ] as const) {
    const fd = openSync(join(store, `svc-${k}.log`), "w");
    let chunk = "";
    for (let i = 0; i < TRACE_LINES / 2; i++) {
      const t = new Date(T0 + i * 2 + k).toISOString();
      chunk += `${t} INFO x-request-id=req-big n=${i} ${PAD}${PAD}{"ikontainer_CUID":"${cuid}","svc":"s${k}"}\n`;
      if (chunk.length > 1 << 20) {
        writeSync(fd, chunk);
        chunk = "";
      }
    }
    writeSync(fd, chunk);
    closeSync(fd);
  }
});
