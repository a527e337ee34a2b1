/**
 * The real receivers of bench/cpu-per-line.ts's `run-fluentd` and `run-es` conditions, started once per bench
 * run on loopback and stopped by PID at the end (and on SIGINT/SIGTERM), plus the agent's Prometheus counter the
 * window counts delivered lines with.
 *
 *   fluentd        1.16 from ../shared/vendor (scripts/fluentd.sh) with the `<source>` deploy/ ships (in_forward,
 *                  TLS, shared key, acks); its `<match>` is replaced by out_file, one file per trial's tag, flushed
 *                  every second, so the end-of-trial check counts what fluentd really received
 *   Elasticsearch  a single node from scripts/elasticsearch.sh in /var/tmp/ikontainer-es/bench-<pid>; each trial
 *                  has its own index prefix, counted (`_refresh`, `_count`) and deleted at the end of the trial
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { RealFluentd } from "../test/fixtures/fluentd.js";

const run = promisify(execFile);

export { freePort } from "./app/launch.js";

/** Sum of `ikontainer_lines_out_total` over its sink labels (one sink per agent here), and the labels seen. */
export async function linesOutTotal(metricsPort: number): Promise<{ total: number; sinks: string[] }> {
  const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  let total = 0;
  const sinks: string[] = [];
  for (const m of text.matchAll(/^ikontainer_lines_out_total\{sink="([^"]*)"\} (\S+)$/gm)) {
    sinks.push(m[1]!);
    total += Number(m[2]);
  }
  return { total, sinks };
}

export class BenchFluentd {
  private readonly fluentd: RealFluentd;
  readonly sharedKey = randomBytes(16).toString("hex");
  private readonly outDir: string;
  constructor(
    readonly dir: string,
    port: number,
  ) {
    this.outDir = join(dir, "received");
    mkdirSync(this.outDir, { recursive: true });
    // placeholders ${tag} with a `tag` chunk key: one file per trial's tag prefix
    const match = [
      "<match ikontainer.**>",
      "  @type file",
      `  path ${this.outDir}/\${tag}`,
      "  append true",
      "  <format>",
      "    @type json",
      "  </format>",
      "  <buffer tag>",
      "    @type memory",
      "    flush_mode interval",
      "    flush_interval 1s",
      "  </buffer>",
      "</match>",
    ].join("\n");
    this.fluentd = new RealFluentd(join(dir, "fluentd"), {
      esUrl: "http://127.0.0.1:9",
      indexPrefix: "unused",
      sharedKey: this.sharedKey,
      port,
      match,
    });
  }
  get port(): number {
    return this.fluentd.o.port;
  }
  get ca(): string {
    return this.fluentd.tls.ca;
  }
  pid(): number | undefined {
    return this.fluentd.pid();
  }
  start(): Promise<void> {
    return this.fluentd.start();
  }
  stop(): Promise<void> {
    return this.fluentd.stop();
  }
  /** Lines fluentd wrote for tags starting with `tagPrefix.` (every record is one JSON line). */
  received(tagPrefix: string): number {
    let n = 0;
    for (const f of readdirSync(this.outDir)) {
      if (!f.startsWith(`${tagPrefix}.`)) continue;
      const text = readFileSync(join(this.outDir, f), "utf8");
      for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) n++;
    }
    return n;
  }
}

export class BenchElasticsearch {
  readonly nodeDir: string;
  private readonly script: string;
  url = "";
  constructor(root: string) {
    this.nodeDir = join("/var/tmp/ikontainer-es", `bench-${process.pid}`);
    this.script = join(root, "scripts", "elasticsearch.sh");
  }
  async start(port: number): Promise<void> {
    await run("sh", [this.script, "start", String(port), this.nodeDir], { timeout: 180_000 });
    this.url = `http://127.0.0.1:${port}`;
  }
  pid(): number | undefined {
    const f = join(this.nodeDir, "pid");
    return existsSync(f) ? Number(readFileSync(f, "utf8").trim()) : undefined;
  }
  /** Synchronous, so a signal handler can call it too. */
  stopSync(): void {
    try {
      execFileSync("sh", [this.script, "stop", this.nodeDir], { stdio: "ignore", timeout: 60_000 });
    } finally {
      rmSync(this.nodeDir, { recursive: true, force: true });
      rmSync(`${this.nodeDir}.lock`, { force: true });
    }
  }
  /** Documents under `prefix-*` once everything indexed is searchable. */
  async count(prefix: string): Promise<number> {
    await fetch(`${this.url}/${prefix}-*/_refresh?ignore_unavailable=true&allow_no_indices=true`, {
      method: "POST",
    });
    const r = await fetch(`${this.url}/${prefix}-*/_count?ignore_unavailable=true&allow_no_indices=true`);
    return Number(((await r.json()) as { count?: number }).count ?? 0);
  }
  async drop(prefix: string): Promise<void> {
    await fetch(`${this.url}/${prefix}-*`, { method: "DELETE" });
  }
}
