/**
 * Proxy overhead (issue 4): HTTP requests, each on a new TCP connection (the proxy works per connection),
 * sent directly to an instance and through `ikontainer proxy` (SOCKS5, the name resolved by SRV in a real
 * knotd), interleaved in one run. Latency per request (sequential) and requests/s (concurrent clients).
 *
 *   npm run bench:dns
 *   node bench/.work/dist/bench/dns-proxy.js --requests 2000 --concurrency 16 --duration 5s
 *
 * Results: bench/results/dns-proxy-<stamp>.json
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { connect, type Socket } from "node:net";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SocksClient } from "socks";
import { parseDuration } from "../src/config/units.js";
import { uuidV7 as v7 } from "../src/core/cuid.js";
import { parseTsigSpec } from "../src/discovery/tsig.js";
import { registerInstance } from "../src/discovery/update.js";
import { freePort, startKnot } from "../test/fixtures/knot.js";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "16" },
    duration: { type: "string", default: "5s" },
    out: { type: "string", default: new URL("../../../results/", import.meta.url).pathname },
  },
});
// Compiled to bench/.work/dist/bench/: the repository root is four levels up.
const CLI = new URL("../../../../dist/cli/main.js", import.meta.url).pathname;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const summary = (xs: number[]) => ({
  n: xs.length,
  p50_ms: +pct(xs, 50).toFixed(3),
  p90_ms: +pct(xs, 90).toFixed(3),
  p99_ms: +pct(xs, 99).toFixed(3),
  mean_ms: +(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(3),
});

function request(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    let body = "";
    socket.on("data", (d: Buffer) => {
      body += d.toString();
    });
    socket.once("end", () => (body.endsWith("ok") ? resolve() : reject(new Error(`bad reply: ${body}`))));
    socket.once("error", reject);
    socket.write("GET / HTTP/1.0\r\nHost: web\r\n\r\n");
  });
}

async function main(): Promise<void> {
  const loadStart = +os.loadavg()[0]!.toFixed(2);
  const knot = await startKnot();
  const host = "127.0.0.2";
  const port = await freePort(host);
  const web = createServer((_q, s) => s.end("ok"));
  await new Promise<void>((r) => web.listen(port, host, r));
  await registerInstance(
    { server: { host: knot.host, port: knot.port }, key: parseTsigSpec(knot.tsig), zone: knot.zone },
    {
      cuid: v7(),
      svcLabel: "web",
      namespace: "bench",
      zone: knot.zone,
      ip: host,
      ports: [{ name: "http", port, proto: "tcp" }],
      started: new Date().toISOString(),
    },
    { ttl: 5000, leaseMs: 300_000 },
  );
  const name = `web.bench.${knot.zone}`;
  /** `ikontainer proxy` as users run it, at a given log level (info: one JSON line per connection). */
  const startProxy = async (logLevel: string) => {
    const port = await freePort();
    const logFile = join(os.tmpdir(), `ikt-proxy-bench-${process.pid}-${logLevel}.log`);
    const child: ChildProcess = spawn(
      "node",
      [
        CLI,
        "proxy",
        "--listen",
        `127.0.0.1:${port}`,
        "--dns-server",
        `127.0.0.1:${knot.port}`,
        "--zone",
        knot.zone,
        "--log-level",
        logLevel,
      ],
      { stdio: ["ignore", "ignore", openSync(logFile, "w")] },
    );
    const deadline = Date.now() + 10_000;
    // Ready once it accepts connections (at warn level it logs nothing when it starts).
    for (;;) {
      const ok = await new Promise<boolean>((r) => {
        const s = connect({ host: "127.0.0.1", port });
        s.once("connect", () => {
          s.destroy();
          r(true);
        });
        s.once("error", () => r(false));
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`proxy did not start: ${readFileSync(logFile, "utf8")}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const via = async () => {
      const { socket } = await SocksClient.createConnection({
        proxy: { host: "127.0.0.1", port, type: 5 },
        command: "connect",
        destination: { host: name, port: 80 },
        timeout: 5000,
      });
      await request(socket);
    };
    return { child, via };
  };
  const direct = async () => {
    const s = connect({ host, port });
    await new Promise((r, j) => s.once("connect", r).once("error", j));
    await request(s);
  };
  const proxies: ChildProcess[] = [];
  try {
    const info = await startProxy("info");
    const quiet = await startProxy("warn");
    proxies.push(info.child, quiet.child);
    const paths = { direct, proxy: info.via, proxy_quiet: quiet.via } as const;
    type Path = keyof typeof paths;
    // Warm-up every path (JIT, the proxies' DNS caches).
    for (let i = 0; i < 200; i++) await Promise.all([direct(), info.via(), quiet.via()]);

    // Latency: sequential, interleaved in blocks of 50 so drift hits every path alike.
    const lat: Record<Path, number[]> = { direct: [], proxy: [], proxy_quiet: [] };
    const n = Number(args.requests);
    for (let done = 0; done < n; done += 50) {
      for (const k of Object.keys(paths) as Path[]) {
        for (let i = 0; i < 50; i++) {
          const t0 = performance.now();
          await paths[k]();
          lat[k].push(performance.now() - t0);
        }
      }
    }

    // Throughput: `concurrency` clients in closed loops for `duration`, each path twice, alternating.
    const durationMs = parseDuration(args.duration!, "--duration");
    const conc = Number(args.concurrency);
    const throughput = async (f: () => Promise<void>) => {
      let count = 0;
      let errors = 0;
      const end = performance.now() + durationMs;
      await Promise.all(
        Array.from({ length: conc }, async () => {
          while (performance.now() < end) {
            try {
              await f();
              count++;
            } catch {
              errors++;
            }
          }
        }),
      );
      return { rps: +((count * 1000) / durationMs).toFixed(1), errors };
    };
    const tp: Record<Path, { rps: number; errors: number }[]> = { direct: [], proxy: [], proxy_quiet: [] };
    for (let r = 0; r < 2; r++) {
      for (const k of Object.keys(paths) as Path[]) tp[k].push(await throughput(paths[k]));
    }
    const d = summary(lat.direct);
    const p = summary(lat.proxy);
    const q = summary(lat.proxy_quiet);
    const best = (xs: { rps: number }[]) => Math.max(...xs.map((x) => x.rps));
    const out = {
      benchmark: "dns-proxy",
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
      // Other work on the machine skews the figures: the 1-minute load average at the start and at the end.
      load_average: { start: loadStart, end: +os.loadavg()[0]!.toFixed(2) },
      setup:
        "HTTP/1.0 GET, a new TCP connection per request; direct = to the instance's address; proxy = SOCKS5 to `ikontainer proxy` (separate process, default log level info: one JSON log line per connection naming the peer CUID), which resolves web.bench.<zone>:80 through SRV _http._tcp (cached for the records' 5 s TTL) and connects; proxy_quiet = the same with --log-level warn (no per-connection line)",
      latency: {
        direct: d,
        proxy: p,
        proxy_quiet: q,
        added_p50_ms: +(p.p50_ms - d.p50_ms).toFixed(3),
        added_p99_ms: +(p.p99_ms - d.p99_ms).toFixed(3),
        added_mean_ms: +(p.mean_ms - d.mean_ms).toFixed(3),
        quiet_added_p50_ms: +(q.p50_ms - d.p50_ms).toFixed(3),
        quiet_added_p99_ms: +(q.p99_ms - d.p99_ms).toFixed(3),
      },
      throughput: {
        concurrency: conc,
        duration_ms: durationMs,
        direct_runs: tp.direct,
        proxy_runs: tp.proxy,
        proxy_quiet_runs: tp.proxy_quiet,
        direct_rps: best(tp.direct),
        proxy_rps: best(tp.proxy),
        proxy_quiet_rps: best(tp.proxy_quiet),
        proxy_relative: +(best(tp.proxy) / best(tp.direct)).toFixed(3),
        proxy_quiet_relative: +(best(tp.proxy_quiet) / best(tp.direct)).toFixed(3),
      },
      notes:
        "Client, proxy, web server and knotd share the machine's 2 cores, so requests/s through the proxy also pays for the proxy's CPU.",
    };
    mkdirSync(args.out!, { recursive: true });
    const file = join(args.out!, `dns-proxy-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(out, null, 2)}\nwritten to ${file}\n`);
  } finally {
    for (const c of proxies) c.kill("SIGTERM");
    web.close();
    await knot.stop();
  }
}

await main();
