import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { documentId } from "../../src/sinks/elasticsearch.js";
import { allIds, sharedElasticsearch } from "../fixtures/elasticsearch.js";
import { waitForCount } from "../helpers/progress.js";

const WRITER = new URL("./fixtures/sink-writer.mjs", import.meta.url).pathname;
const TOTAL = 20_000;
const PER_BATCH = 500;

let url: string;
let tmp: string;
beforeAll(async () => {
  url = await sharedElasticsearch();
  tmp = mkdtempSync(join(tmpdir(), "ikon-es-kill9-"));
}, 310_000);
afterAll(() => {
  proxy?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/**
 * Between the writer and Elasticsearch: once `freeze` is set, bulk requests still reach Elasticsearch (their
 * documents are stored) but their answers are held back, so the writer is killed with requests in flight
 * whose documents are stored but not acknowledged (the worst case for duplicates).
 */
let proxy: Server | undefined;
let freeze = false;
let frozenStored = 0;
async function startProxy(target: string): Promise<string> {
  const t = new URL(target);
  proxy = createServer((req, res) => {
    const up = request(
      { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        const hold = freeze && req.url?.includes("_bulk");
        const chunks: Buffer[] = [];
        r.on("data", (c: Buffer) => chunks.push(c));
        r.on("end", () => {
          if (hold) {
            frozenStored++; // Elasticsearch answered: the documents are stored; the writer never hears it
            return;
          }
          res.writeHead(r.statusCode ?? 502, r.headers);
          res.end(Buffer.concat(chunks));
        });
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy!.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}

function checkpointed(cp: string): number {
  if (!existsSync(cp)) return 0;
  const lines = readFileSync(cp, "utf8").trim().split("\n").filter(Boolean);
  return lines.length;
}

function runWriter(args: string[]): {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [WRITER, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, out: () => out, exited };
}

it("kill -9 while bulk requests are in flight, then a replay from the checkpoint: nothing lost, nothing twice", async () => {
  const prefix = `t-${randomUUID().slice(0, 8)}-kill9`;
  const cuid = randomUUID();
  const cp = join(tmp, "checkpoint");
  const args = [url, prefix, cuid, cp, String(TOTAL), String(PER_BATCH), "4"];

  const viaProxy = await startProxy(url);
  const first = runWriter([viaProxy, ...args.slice(1)]);
  const batches = TOTAL / PER_BATCH;
  await waitForCount(
    () => {
      if (first.child.exitCode !== null) throw new Error(`writer ended early: ${first.out()}`);
      return checkpointed(cp);
    },
    batches * 0.3,
    { stepMs: 5, what: "batches checkpointed before the freeze" },
  );
  freeze = true;
  await waitForCount(() => frozenStored, 2, { stepMs: 5, what: "requests stored but held by the proxy" });
  first.child.kill("SIGKILL");
  await first.exited;
  const atKill = checkpointed(cp);
  expect(atKill).toBeLessThan(batches);

  const second = runWriter(args);
  expect(await second.exited).toBe(0);
  expect(second.out()).toMatch(/done duplicates=\d+/);
  // documents stored by requests that were in flight at the kill came back as 409: stored once, not lost
  const dup = Number(/duplicates=(\d+)/.exec(second.out())![1]);
  expect(dup).toBeGreaterThan(0);

  // the ids the writer's lines must have, computed here independently of the writer
  const expected = new Set<string>();
  let offset = 0;
  const batch = { stream: { key: "file:0:app.log" }, inputId: "2049:4242" } as Parameters<
    typeof documentId
  >[1];
  for (let j = 0; j < TOTAL; j++) {
    const bytes = Buffer.from(`line ${j} request_id=r-${j % 97} ${"x".repeat(j % 50)}`);
    expected.add(documentId(cuid, batch, offset, undefined, bytes));
    offset += bytes.length + 1;
  }
  const got = await allIds(url, `${prefix}-*`);
  expect(got.total).toBe(TOTAL);
  expect(got.ids.size).toBe(TOTAL);
  expect([...expected].filter((id) => !got.ids.has(id))).toEqual([]);
}, 180_000);
