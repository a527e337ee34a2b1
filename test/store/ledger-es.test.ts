import { execFile } from "node:child_process";
import { randomInt, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { esConnection } from "../../src/config/elasticsearch.js";
import type { LineBatch } from "../../src/core/record.js";
import { ElasticsearchSink } from "../../src/sinks/elasticsearch.js";
import { CuidLedger, foldLedger, ledgerPath, readLedger } from "../../src/store/ledger.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import { es, freePort, sharedElasticsearch } from "../fixtures/elasticsearch.js";

// each test spawns the CLI or talks to Elasticsearch several times: room for a loaded machine
vi.setConfig({ testTimeout: 150_000 });

const run = promisify(execFile);
const MAIN = new URL("../../dist/cli/main.js", import.meta.url).pathname;
let url: string;
let dir: string;

beforeAll(async () => {
  url = await sharedElasticsearch();
  dir = mkdtempSync(join(tmpdir(), "ikon-ledger-"));
}, 310_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

const randomIp = () => `10.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(1, 255)}`;

describe("CUID ledger", () => {
  it("folds events: a restart keeps the first start, a stop belongs to the last start, a torn line is skipped", () => {
    const text = [
      { event: "start", cuid: "a", svc: "s", pod_ip: "10.0.0.1", started_at: "2026-01-01T00:00:00.000Z" },
      { event: "stop", cuid: "a", stopped_at: "2026-01-01T01:00:00.000Z" },
      { event: "start", cuid: "a", svc: "s", pod_ip: "10.0.0.1", started_at: "2026-01-01T02:00:00.000Z" },
      { event: "start", cuid: "b", svc: "t", started_at: "2026-01-01T00:30:00.000Z" },
      { event: "stop", cuid: "b", stopped_at: "2026-01-01T03:00:00.000Z" },
    ]
      .map((e) => JSON.stringify(e))
      .join("\n")
      .concat('\n{"event":"stop","cuid":"a","stopp');
    expect(foldLedger(text)).toEqual([
      { cuid: "a", svc: "s", pod_ip: "10.0.0.1", started_at: "2026-01-01T00:00:00.000Z" },
      { cuid: "b", svc: "t", started_at: "2026-01-01T00:30:00.000Z", stopped_at: "2026-01-01T03:00:00.000Z" },
    ]);
  });

  it("records locally even while Elasticsearch is down, and copies everything once it is reachable", async () => {
    const state = join(dir, "down");
    const cuid = randomUUID();
    const ip = randomIp();
    const down = new CuidLedger(state, {
      es: esConnection(`http://127.0.0.1:${await freePort()}`, { esRequestTimeout: 1000 }),
    });
    down.recordStart({ cuid, svc: "web", pod: "web-0", pod_ip: ip, started_at: "2026-02-01T00:00:00.000Z" });
    expect(readLedger(state)).toEqual([
      { cuid, svc: "web", pod: "web-0", pod_ip: ip, started_at: "2026-02-01T00:00:00.000Z" },
    ]);
    expect(await down.flush(600)).toBe(false);
    down.recordStop(cuid, new Date("2026-02-01T05:00:00.000Z"));
    await down.close();

    // next start, Elasticsearch is back: the pending entries are copied (ledger.es-offset says how far)
    const up = new CuidLedger(state, { es: esConnection(url, {}) });
    expect(await up.flush(20_000)).toBe(true);
    const doc = await es<{ _source: Record<string, unknown> }>(url, "GET", `/ikontainer-cuids/_doc/${cuid}`);
    expect(doc._source).toEqual({
      cuid,
      svc: "web",
      pod: "web-0",
      pod_ip: ip,
      started_at: "2026-02-01T00:00:00.000Z",
      stopped_at: "2026-02-01T05:00:00.000Z",
    });
    expect(Number(readFileSync(join(state, "ledger.es-offset"), "utf8"))).toBe(
      readFileSync(ledgerPath(state)).length,
    );
    await up.close();
  });
});

describe("query commands with --es (real Elasticsearch)", () => {
  it("logs, trace and whois answer from the log indices and ikontainer-cuids", async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}-logs`;
    const req = randomUUID();
    const ip = randomIp();
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const state = join(dir, "q");
    const ledger = new CuidLedger(state, { es: esConnection(url, {}) });
    ledger.recordStart({
      cuid: a,
      svc: "frontend",
      pod: "fe-1",
      pod_ip: ip,
      started_at: "2026-03-01T10:00:00.000Z",
    });
    ledger.recordStop(a, new Date("2026-03-01T11:00:00.000Z"));
    ledger.recordStart({
      cuid: c,
      svc: "frontend",
      pod: "fe-2",
      pod_ip: ip,
      started_at: "2026-03-01T11:00:05.000Z",
    });
    ledger.recordStart({
      cuid: b,
      svc: "checkout",
      pod: "co-1",
      pod_ip: randomIp(),
      started_at: "2026-03-01T09:00:00.000Z",
    });
    expect(await ledger.flush(20_000)).toBe(true);
    await ledger.close();

    const write = async (cuid: string, svc: string, lines: Array<[string, string]>) => {
      const sink = new ElasticsearchSink({
        connection: esConnection(url, {}),
        structured: { identity: { cuid, svc }, requestIds: new RequestIdExtractor() },
        deadLetterPath: join(dir, "dead.jsonl"),
        indexPrefix: prefix,
      });
      let offset = 0;
      const batch: LineBatch = {
        stream: { key: "file:0:x.log", path: "/x.log", relPath: "x.log", channel: "file" },
        inputId: `1:${cuid}`,
        endOffset: 0,
        endPart: 0,
        readAt: Date.now(),
        lines: lines.map(([t, text]) => {
          const l = { bytes: Buffer.from(text), offset, time: Date.parse(t) };
          offset += text.length + 1;
          return l;
        }),
      };
      await sink.write(batch);
      await sink.close();
    };
    await write(a, "frontend", [
      ["2026-03-01T10:10:00.000Z", `GET /pay x-request-id=${req}`],
      ["2026-03-01T10:10:02.000Z", `200 /pay x-request-id=${req}`],
      ["2026-03-01T10:10:03.000Z", "something else"],
    ]);
    await write(b, "checkout", [["2026-03-01T10:10:01.000Z", `charge request_id=${req}`]]);
    await es(url, "POST", `/${prefix}-*/_refresh`);

    const common = ["--es", url, "--es-index-prefix", prefix];
    const logs = await cli("logs", "--cuid", a, "--request-id", req, "--json", ...common);
    expect(logs.code).toBe(0);
    expect(
      logs.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).message),
    ).toEqual([`GET /pay x-request-id=${req}`, `200 /pay x-request-id=${req}`]);
    const since = await cli("logs", "--cuid", a, "--since", "2026-03-01T10:10:02.500Z", "--json", ...common);
    expect(
      since.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).message),
    ).toEqual(["something else"]);

    const trace = JSON.parse((await cli("trace", req, "--json", ...common)).stdout);
    expect(trace.hops.map((h: { cuid: string; lines: unknown[] }) => [h.cuid, h.lines.length])).toEqual([
      [a, 2],
      [b, 1],
    ]);
    expect(trace.hops[0].pod_ip).toBe(ip); // from the ledger: the sink had no POD_IP here

    const at = JSON.parse(
      (await cli("whois", ip, "--at", "2026-03-01T10:30:00Z", "--json", ...common)).stdout,
    );
    expect(at.map((m: { cuid: string }) => m.cuid)).toEqual([a]);
    const both = await cli("whois", ip, ...common);
    expect(both.stdout).toContain(a);
    expect(both.stdout).toContain(c);
    expect(both.stdout).toContain("2026-03-01T11:00:00.000Z");
    const gap = await cli("whois", ip, "--at", "2026-03-01T11:00:02Z", ...common);
    expect(gap.code).toBe(1);

    const unreachable = await cli(
      "logs",
      "--cuid",
      a,
      "--es",
      `http://127.0.0.1:${await freePort()}`,
      "--es-request-timeout",
      "1s",
    );
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain("IKON_ERR_QUERY");
  });
});
