/**
 * Smoke test of the overhead benchmark (bench/): the app, our load generator, real Locust, and one short
 * condition of the harness with the real agent. Nothing here is timed: speed is measured by
 * `npm run bench:overhead`, not by tests.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningApp, SERVICES, startApp } from "../../bench/app/launch.js";
import { account, tallyDir } from "../../bench/app/tally.js";
import { exactSummary, LOCUST_STATS_COLUMNS, locustStatsCsv, runLoad } from "../../bench/loadgen.js";
import { main } from "../../bench/overhead.js";
import { waitUntil } from "../helpers/progress.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const LOCUST = "/usr/bin/locust";

let dir: string;
let app: RunningApp;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ikon-bench-"));
  app = await startApp({ logMode: "file", logRoot: join(dir, "logs"), outputRoot: join(dir, "procs") });
});

afterAll(async () => {
  await app?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("benchmark app", () => {
  it("makes an x-request-id at the gateway and every service logs one line with it", async () => {
    const r = await fetch(`${app.url}/`);
    expect(r.status).toBe(200);
    const id = r.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await r.text();
    const up = await fetch(`${app.url}/upload`, {
      method: "POST",
      headers: { "x-request-id": "client-given-id" },
      body: JSON.stringify({ title: "A study" }),
    });
    expect(up.status).toBe(201);
    await up.text();
    const written = await app.linesWritten();
    expect(written).toEqual({ "db-access": 2, search: 1, upload: 1, api: 2, gateway: 2 });
    // File streams flush asynchronously: wait until every counted line is in its file.
    const linesIn = (svc: keyof typeof written) =>
      existsSync(app.logFile(svc)) ? readFileSync(app.logFile(svc), "utf8").split("\n").length - 1 : 0;
    await waitUntil(
      () => {
        const have = SERVICES.map(linesIn);
        return { done: SERVICES.every((svc, i) => have[i] === written[svc]), progress: have.join() };
      },
      { what: "the services' log files" },
    );
    for (const svc of ["gateway", "api", "search", "db-access"] as const) {
      const lines = readFileSync(app.logFile(svc), "utf8").trim().split("\n");
      expect(lines[0]).toContain(` INFO ${svc} seq=1 request_id=${id} `);
    }
    expect(readFileSync(app.logFile("upload"), "utf8")).toContain(
      "INFO upload seq=1 request_id=client-given-id ",
    );
  });

  it("our load generator keeps the rate and writes Locust's _stats.csv columns", async () => {
    const result = await runLoad({ host: app.url, users: 20, durationMs: 2000 });
    const s = exactSummary(result, 500);
    expect(s.failures).toBe(0);
    expect(result.samples.length).toBeGreaterThan(0);
    // Never faster than 20 users × one request per second, however fast or slow the machine is: no window
    // shorter than a period holds more starts than there are users (a timer may fire ~1 ms early), and
    // nothing starts after the end.
    const starts = result.samples.map((x) => x.at).sort((a, b) => a - b);
    let most = 0;
    for (let i = 0, j = 0; i < starts.length; i++) {
      while (starts[i]! - starts[j]! >= 990) j++;
      most = Math.max(most, i - j + 1);
    }
    expect(most).toBeLessThanOrEqual(20);
    expect(starts.at(-1)!).toBeLessThan(2000);
    expect(s.p50).toBeGreaterThan(0);
    const csv = locustStatsCsv(result).trim().split("\r\n");
    expect(csv[0]).toBe(LOCUST_STATS_COLUMNS.join(","));
    const agg = csv.at(-1)!.split(",");
    expect(agg[1]).toBe("Aggregated");
    expect(Number(agg[2])).toBe(s.count);
  });
});

describe("real Locust with bench/locustfile.py", () => {
  it("runs headless and writes exact totals and the same CSV columns", () => {
    // Never skipped: scripts/setup.sh installs python3-locust.
    if (!existsSync(LOCUST))
      throw new Error(`${LOCUST} is missing: run scripts/setup.sh (installs python3-locust)`);
    const exact = join(dir, "locust_exact.json");
    const r = spawnSync(
      LOCUST,
      ["-f", join(ROOT, "bench/locustfile.py"), "--headless", "-u", "10", "-r", "10", "-t", "10s"].concat([
        "--host",
        app.url,
        "--csv",
        join(dir, "locust"),
        "--only-summary",
        "--loglevel",
        "WARNING",
      ]),
      {
        cwd: dir,
        env: {
          ...process.env,
          IKON_BENCH_EXACT: exact,
          IKON_BENCH_WARMUP_S: "1",
          IKON_BENCH_DURATION_S: "10",
        },
        encoding: "utf8",
        timeout: 100_000,
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const totals = JSON.parse(readFileSync(exact, "utf8"));
    expect(totals.tool).toBe("locust");
    expect(totals.failures).toBe(0);
    expect(totals.count).toBeGreaterThan(0);
    // constant_throughput(1): 10 users, at most one request a second each (10 s run: a loaded machine still
    // finishes some; a 3 s run once finished none at load 45)
    expect(totals.count).toBeLessThanOrEqual(10 * 11);
    expect(totals.steadyCount).toBeLessThan(totals.count);
    expect(totals.p50).toBeGreaterThan(0);
    const header = readFileSync(join(dir, "locust_stats.csv"), "utf8").split("\r\n")[0];
    expect(header).toBe(LOCUST_STATS_COLUMNS.join(","));
  }, 120_000);
});

describe("the harness (bench/overhead.ts), one short run", () => {
  it("measures no agent and the agent with the file sink, and every line is tagged exactly once", async () => {
    const out = join(dir, "results");
    const file = await main(
      ["--quick", "--rates", "20", "--duration", "3s", "--warmup", "1s", "--conditions", "none,file"].concat([
        "--load",
        "loadgen",
        "--out",
        out,
      ]),
    );
    const res = JSON.parse(readFileSync(file, "utf8")) as {
      complete: boolean;
      rows: {
        condition: string;
        written: number;
        tagged: number;
        lost: number;
        duplicates: number;
        failures: number;
        requests: number;
      }[];
      trials: { condition: string; error?: string; agent?: { cpuSeconds: number; peakRssMiB: number } }[];
    };
    expect(res.complete).toBe(true);
    expect(res.trials.map((t) => t.error ?? "")).toEqual(["", ""]);
    const none = res.rows.find((x) => x.condition === "none")!;
    const fileSink = res.rows.find((x) => x.condition === "file")!;
    expect(none.requests).toBeGreaterThan(0);
    expect(fileSink.failures).toBe(0);
    // 4 services see each request; the 20 proof requests before the load count too
    expect(fileSink.written).toBeGreaterThanOrEqual(4 * fileSink.requests);
    expect(fileSink.tagged).toBe(fileSink.written);
    expect(fileSink.lost).toBe(0);
    expect(fileSink.duplicates).toBe(0);
    const agent = res.trials.find((t) => t.condition === "file")!.agent!;
    expect(agent.cpuSeconds).toBeGreaterThan(0);
    expect(agent.peakRssMiB).toBeGreaterThan(10);
    expect(readFileSync(file.replace(/\.json$/, ".svg"), "utf8")).toContain("<svg");
    expect(readFileSync(file.replace(/\.json$/, ".md"), "utf8")).toContain("| 20 | agent (run) → file |");
  }, 300_000); // two conditions with app and agent start-up: minutes on a loaded machine
});

describe("line accounting", () => {
  it("counts lost, duplicated and cut lines from sequence numbers", () => {
    const d = mkdtempSync(join(tmpdir(), "ikon-tally-"));
    try {
      const tag = '{"ikontainer_CUID":"0190f0e0-0000-7000-8000-000000000001","svc":"api"}';
      const line = (n: number) =>
        `2026-01-01T00:00:00.000Z INFO api seq=${n} request_id=x "GET / HTTP/1.1" 200 1.00ms`;
      execFileSync("sh", [
        "-c",
        `printf '%s\\n' '${line(1)}${tag}' '${line(1)}${tag}' '${line(3)}${tag}' '2026-01-01T00:00:00.000Z INFO api seq=4 req${tag}' '${line(5)}' > ${d}/app.log`,
      ]);
      const a = account(tallyDir(d), { api: 5 });
      expect(a).toMatchObject({ written: 5, tagged: 2, lost: 3, duplicates: 1, malformed: 1, untagged: 1 });
      expect(SERVICES).toContain("api");
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
