/**
 * Registration latency (issue 4): N instances register at once with a real knotd; for each, the time from
 * sending its update until `kdig` sees every one of its records (instance A and TXT, its PTR in the service's
 * instance list, its SRV, its reverse PTR). Also the time until the server's signed NOERROR reply (ack).
 *
 *   npm run bench:dns                       (both DNS benchmarks)
 *   node bench/.work/dist/bench/dns-registration.js --instances 200 --kdig-concurrency 16
 *
 * Results: bench/results/dns-registration-<stamp>.json
 */
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { uuidV7 as v7 } from "../src/core/cuid.js";
import type { InstanceIdentity } from "../src/discovery/records.js";
import { parseTsigSpec } from "../src/discovery/tsig.js";
import { registerInstance, type UpdateTarget } from "../src/discovery/update.js";
import { type KnotServer, startKnot } from "../test/fixtures/knot.js";

const { values: args } = parseArgs({
  options: {
    instances: { type: "string", default: "200" },
    "kdig-concurrency": { type: "string", default: "16" },
    sequential: { type: "string", default: "20" },
    out: { type: "string", default: new URL("../../../results/", import.meta.url).pathname },
  },
});

function kdig(knot: KnotServer, queries: [string, string][]): Promise<string> {
  const a = [`@${knot.host}`, "-p", String(knot.port), "+tcp", "+short", "+timeout=2", "+retry=0"];
  for (const [n, t] of queries) a.push(n, t);
  return new Promise((resolve, reject) =>
    execFile("kdig", a, { maxBuffer: 16 << 20 }, (e, out) => (e ? reject(e) : resolve(out))),
  );
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const summary = (xs: number[]) => ({
  n: xs.length,
  p50_ms: +pct(xs, 50).toFixed(2),
  p90_ms: +pct(xs, 90).toFixed(2),
  p99_ms: +pct(xs, 99).toFixed(2),
  max_ms: +Math.max(...xs).toFixed(2),
  mean_ms: +(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2),
});

/** A tiny pool: at most `limit` of the queued jobs run at once. */
function pool(limit: number) {
  let active = 0;
  const queue: (() => void)[] = [];
  return async <T>(job: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((r) => queue.push(r));
    active++;
    try {
      return await job();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

async function main(): Promise<void> {
  const loadStart = +os.loadavg()[0]!.toFixed(2);
  const n = Number(args.instances);
  const knot = await startKnot({ reverseZone: "127.in-addr.arpa" });
  const target: UpdateTarget = {
    server: { host: knot.host, port: knot.port },
    key: parseTsigSpec(knot.tsig),
    zone: knot.zone,
    reverseZone: knot.reverseZone,
    timeoutMs: 30_000,
  };
  const timing = { ttl: 5000, leaseMs: 300_000 };
  const identity = (i: number, svc: string): InstanceIdentity => ({
    cuid: v7(),
    svcLabel: svc,
    namespace: "bench",
    zone: knot.zone,
    ip: `127.${1 + Math.floor(i / 250)}.${i % 250}.${svc === "seq" ? 2 : 1}`,
    ports: [{ name: "http", port: 8000 + (i % 1000), proto: "tcp" }],
    pod: `${svc}-${i}`,
    node: "bench-node",
    started: new Date().toISOString(),
  });
  const reverse = (ip: string) => `${ip.split(".").reverse().join(".")}.in-addr.arpa`;
  try {
    // Warm-up and a sequential baseline: one registration at a time.
    const seq: number[] = [];
    const warmup: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await registerInstance(target, identity(900 + i, "warm"), timing);
      warmup.push(performance.now() - t0);
    }
    for (let i = 0; i < Number(args.sequential); i++) {
      const t0 = performance.now();
      await registerInstance(target, identity(i, "seq"), timing);
      seq.push(performance.now() - t0);
    }

    const ids = Array.from({ length: n }, (_, i) => identity(i, "burst"));
    const service = `burst.bench.${knot.zone}`;
    const check = pool(Number(args["kdig-concurrency"]));
    let kdigRuns = 0;
    const seen = async (id: InstanceIdentity): Promise<boolean> => {
      const name = `${id.cuid}.${service}`;
      kdigRuns++;
      const out = await kdig(knot, [
        [name, "A"],
        [name, "TXT"],
        [service, "PTR"],
        [`_http._tcp.${service}`, "SRV"],
        [reverse(id.ip), "PTR"],
      ]);
      const lines = out.split("\n");
      return (
        lines.includes(id.ip) && // instance A
        out.includes(`"cuid=${id.cuid}"`) && // instance TXT
        lines.filter((l) => l === `${name}.`).length === 2 && // service PTR list and reverse PTR
        lines.includes(`0 10 ${id.ports[0]!.port} ${name}.`) // SRV
      );
    };
    const wallStart = performance.now();
    const results = await Promise.all(
      ids.map(async (id) => {
        const t0 = performance.now();
        await registerInstance(target, id, timing);
        const ack = performance.now() - t0;
        for (;;) {
          if (await check(() => seen(id))) return { ack, visible: performance.now() - t0 };
          await new Promise((r) => setTimeout(r, 5));
        }
      }),
    );
    const wallMs = performance.now() - wallStart;
    // Independent final check: every instance is in the service's instance list and SRV set.
    const all = await kdig(knot, [
      [service, "PTR"],
      [`_http._tcp.${service}`, "SRV"],
    ]);
    const ptrs = all.split("\n").filter((l) => l.endsWith(`.${service}.`) && !l.includes(" ")).length;
    const srvs = all.split("\n").filter((l) => l.includes(" ") && l.endsWith(`.${service}.`)).length;

    const out = {
      benchmark: "dns-registration",
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
      // Other work on the machine skews the figures: the 1-minute load average at the start and at the end.
      load_average: { start: loadStart, end: +os.loadavg()[0]!.toFixed(2) },
      server: "knotd (Debian package), 127.0.0.1, TCP, hmac-sha256 TSIG",
      instances: n,
      records_per_instance:
        "forward update: instance A + TXT, service A + PTR, SRV (7 RR changes); reverse update: PTR (2 RR changes)",
      ack: summary(results.map((r) => r.ack)),
      visible_via_kdig: summary(results.map((r) => r.visible)),
      warmup_ms: warmup.map((x) => +x.toFixed(1)),
      sequential_single_registration: summary(seq),
      wall_clock_all_visible_ms: +wallMs.toFixed(1),
      registrations_per_second: +((n * 1000) / wallMs).toFixed(1),
      kdig_runs: kdigRuns,
      kdig_concurrency: Number(args["kdig-concurrency"]),
      final_check: { service_ptr_records: ptrs, srv_records: srvs },
      notes:
        "ack = update sent until the server's signed NOERROR reply for both the forward and the reverse update. visible_via_kdig = update sent until one kdig run (5 queries over TCP) shows every record of the instance; kdig runs are limited to kdig_concurrency at a time, so process-spawn and queueing time is included. knotd (3.2, Debian) answers an occasional update after about 1 s; BIND's nsupdate sees the same stalls against it (7 of 150 sequential updates in one check), so single outliers near 1000 ms are the server's, not the client's.",
    };
    mkdirSync(args.out!, { recursive: true });
    const file = join(args.out!, `dns-registration-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(out, null, 2)}\nwritten to ${file}\n`);
    if (ptrs !== n || srvs !== n) {
      process.stderr.write(`final check failed: ${ptrs} PTR and ${srvs} SRV records for ${n} instances\n`);
      process.exitCode = 1;
    }
  } finally {
    await knot.stop();
  }
}

await main();
