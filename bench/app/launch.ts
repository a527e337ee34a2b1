/**
 * Starts and stops the benchmark app: five node:http services on loopback, free ports picked at runtime.
 * Each service logs to `<logRoot>/<svc>/app.log` (sidecar style) or to stdout (exec style, where the agent
 * wraps the service process: `ikontainer exec --svc <svc> -- node <svc>.js`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const APP_DIR = dirname(fileURLToPath(import.meta.url)).replace(/\/\.work\/dist\/bench\/app$/, "/app");
export const SERVICES = ["db-access", "search", "upload", "api", "gateway"] as const;
export type Service = (typeof SERVICES)[number];

const UPSTREAMS: Record<Service, Service[]> = {
  "db-access": [],
  search: ["db-access"],
  upload: ["db-access"],
  api: ["search", "upload"],
  gateway: ["api"],
};

/** Every service process started and not yet stopped (so an interrupted benchmark can kill them all). */
export const runningServices = new Set<ChildProcess>();

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** How one service process is started: `node <svc>.js` or that command wrapped by an agent. */
export type Wrap = (svc: Service, command: string[]) => string[];

export interface AppOptions {
  /** `file`: each service appends to `<logRoot>/<svc>/app.log`; `stdout`: it writes its lines to stdout. */
  logMode: "file" | "stdout";
  logRoot: string;
  /** Where each process's stdout/stderr go (the services' own, or the wrapping agent's). */
  outputRoot: string;
  wrap?: Wrap;
  env?: NodeJS.ProcessEnv;
}

export interface RunningApp {
  url: string;
  ports: Record<Service, number>;
  procs: Record<Service, ChildProcess>;
  logFile(svc: Service): string;
  /** Lines each service handed to its log destination (its own counter, read over HTTP). */
  linesWritten(): Promise<Record<Service, number>>;
  /** Pids of the service processes themselves (the agents' children in exec mode). */
  servicePids(): Promise<Record<Service, number>>;
  stop(): Promise<void>;
}

async function waitHealthy(port: number, proc: ChildProcess, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`service on port ${port} exited with ${proc.exitCode}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/__health`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`service on port ${port} not healthy after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function waitExit(p: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    p.once("exit", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export async function startApp(opts: AppOptions): Promise<RunningApp> {
  const ports = {} as Record<Service, number>;
  for (const svc of SERVICES) ports[svc] = await freePort();
  const procs = {} as Record<Service, ChildProcess>;
  const logFile = (svc: Service) => join(opts.logRoot, svc, "app.log");
  mkdirSync(opts.outputRoot, { recursive: true });
  try {
    for (const svc of SERVICES) {
      const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, PORT: String(ports[svc]) };
      delete env.LOG_FILE;
      if (opts.logMode === "file") {
        mkdirSync(dirname(logFile(svc)), { recursive: true });
        env.LOG_FILE = logFile(svc);
      }
      for (const up of UPSTREAMS[svc]) {
        env[`UPSTREAM_${up.toUpperCase().replace(/-/g, "_")}`] = `http://127.0.0.1:${ports[up]}`;
      }
      const base = ["node", join(APP_DIR, `${svc}.js`)];
      const argv = opts.wrap ? opts.wrap(svc, base) : base;
      const out = createWriteStream(join(opts.outputRoot, `${svc}.out`));
      const err = createWriteStream(join(opts.outputRoot, `${svc}.err`));
      const p = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
      p.stdout!.pipe(out);
      p.stderr!.pipe(err);
      procs[svc] = p;
      runningServices.add(p);
      p.once("exit", () => runningServices.delete(p));
    }
    for (const svc of SERVICES) await waitHealthy(ports[svc], procs[svc], 20_000);
  } catch (e) {
    for (const p of Object.values(procs)) p.kill("SIGKILL");
    throw e;
  }
  const stats = async () => {
    const out = {} as Record<Service, { lines: number; pid: number }>;
    for (const svc of SERVICES) {
      const r = await fetch(`http://127.0.0.1:${ports[svc]}/__stats`);
      out[svc] = (await r.json()) as { lines: number; pid: number };
    }
    return out;
  };
  return {
    url: `http://127.0.0.1:${ports.gateway}`,
    ports,
    procs,
    logFile,
    async linesWritten() {
      const s = await stats();
      return Object.fromEntries(SERVICES.map((svc) => [svc, s[svc].lines])) as Record<Service, number>;
    },
    async servicePids() {
      const s = await stats();
      return Object.fromEntries(SERVICES.map((svc) => [svc, s[svc].pid])) as Record<Service, number>;
    },
    async stop() {
      // Front to back, so no service is called after its upstream is gone.
      for (const svc of [...SERVICES].reverse()) {
        const p = procs[svc];
        p.kill("SIGTERM");
        if (!(await waitExit(p, 10_000))) {
          p.kill("SIGKILL");
          await waitExit(p, 2_000);
        }
      }
    },
  };
}
