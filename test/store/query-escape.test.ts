import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, tempDir } from "../helpers/agent.js";

/** An application's control bytes must not reach the operator's terminal raw through `logs` or `trace`. */

const run = promisify(execFile);
const CUID = "0196f1c2-0000-7000-8000-0000000000e5";
// ESC sequences (colour, clear screen, set window title), BEL, DEL, a C1 CSI (U+009B), a bidi override
const HOSTILE = "pay \x1b[31mred\x1b[0m \x1b[2J\x1b]0;owned\x07 del\x7f c1\u009b6n rtl\u202eabc";
let dir: string;

beforeAll(() => {
  dir = tempDir("ikon-query-escape-");
  mkdirSync(join(dir, "store"), { recursive: true });
  const line = `2026-11-23T10:00:00.000Z ${HOSTILE} x-request-id=req-esc`;
  writeFileSync(join(dir, "store", "app.log"), `${line}{"ikontainer_CUID":"${CUID}","svc":"esc.shop"}\n`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<string> {
  const r = await run(process.execPath, [CLI, ...args, "--state-dir", dir]);
  return r.stdout;
}

// no C0 (except the newline ending each output line), DEL, C1 or bidi control in text output
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

describe("text output escapes control characters", () => {
  it("logs prints them as \\xNN / \\uNNNN", async () => {
    const out = await cli("logs", "--cuid", CUID);
    expect(out).not.toMatch(RAW_CONTROL);
    expect(out).toContain(
      "pay \\x1b[31mred\\x1b[0m \\x1b[2J\\x1b]0;owned\\x07 del\\x7f c1\\x9b6n rtl\\u202eabc",
    );
  });

  it("trace prints them escaped too", async () => {
    const out = await cli("trace", "req-esc");
    expect(out).not.toMatch(RAW_CONTROL);
    expect(out).toContain("\\x1b[31mred");
  });

  it("JSON output is unchanged: the exact message, JSON-escaped", async () => {
    const rec = JSON.parse(await cli("logs", "--cuid", CUID, "--json")) as { message: string };
    expect(rec.message).toBe(`2026-11-23T10:00:00.000Z ${HOSTILE} x-request-id=req-esc`);
    const t = JSON.parse(await cli("trace", "req-esc", "--json")) as {
      hops: Array<{ lines: Array<{ message: string }> }>;
    };
    expect(t.hops[0]!.lines[0]!.message).toContain(HOSTILE);
  });
});
