import { type ChildProcess, execFile, spawn } from "node:child_process";
import { appendFileSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { waitUntil } from "../helpers/progress.js";

/**
 * The demo's incident, run for real: one `ikontainer run` agent per container instance (web, cart-1, cart-2,
 * cart-3), written to by scripts/demo-app.mjs. cart-1 is killed with SIGKILL (no clean stop), then cart-3
 * starts with cart-1's pod IP (simulated through POD_IP). Each agent writes its local store and, when `es` is
 * given, Elasticsearch (log indices under `esPrefix`, ledger in ikontainer-cuids).
 */

const run = promisify(execFile);
const REPO = new URL("../..", import.meta.url).pathname;
const MAIN = join(REPO, "dist/cli/main.js");
const APP = join(REPO, "scripts/demo-app.mjs");

export interface Incident {
  dir: string;
  ip: string;
  /** the failing request */
  requestId: string;
  /** when it failed (the application's time), ms */
  at: number;
  cuids: Record<"web" | "cart-1" | "cart-2" | "cart-3", string>;
  stateDirs: string[];
  /** the request ID of the hostile line web logs (markup and control characters) */
  hostileId: string;
}

export const HOSTILE = `<img src=x onerror="document.title='pwned'"> \u001b[31mred\u001b[0m \u202eevil`;

/** Waits for `done()` while `progress()` keeps changing; fails after `idleMs` without change. */
export async function waitFor(
  what: string,
  done: () => boolean | Promise<boolean>,
  progress: () => unknown = () => 0,
  idleMs = 60_000,
): Promise<void> {
  await waitUntil(async () => ({ done: await done(), progress: JSON.stringify(progress()) }), {
    what,
    idleMs,
  });
}

function storedLines(stateDir: string): number {
  let n = 0;
  const walk = (d: string) => {
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const x of names) {
      const p = join(d, x);
      if (statSync(p).isDirectory()) walk(p);
      else n += readFileSync(p, "utf8").split("\n").length - 1;
    }
  };
  walk(join(stateDir, "store"));
  return n;
}

export async function runIncident(
  dir: string,
  net: string,
  es?: { url: string; prefix: string },
): Promise<Incident> {
  const agents = new Map<string, { child: ChildProcess; err: string[] }>();
  const ips: Record<string, string> = {
    web: `${net}.10`,
    "cart-1": `${net}.21`,
    "cart-2": `${net}.22`,
    "cart-3": `${net}.21`,
  };
  const start = async (name: string) => {
    mkdirSync(join(dir, name), { recursive: true });
    const outputs = ["--output", `store:${join(dir, `${name}-state`, "store")}`];
    if (es) outputs.push("--output", `elasticsearch:${es.url}`, "--es-index-prefix", es.prefix);
    const child = spawn(
      process.execPath,
      [
        MAIN,
        "run",
        "--watch",
        join(dir, name),
        "--state-dir",
        join(dir, `${name}-state`),
        "--svc",
        `${name.replace(/-\d$/, "")}.shop.cluster.local`,
        "--linger",
        "500ms",
        ...outputs,
      ],
      {
        env: {
          ...process.env,
          POD_IP: ips[name],
          POD_NAME: name,
          NODE_NAME: "node-a",
          POD_NAMESPACE: "shop",
        },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    const err: string[] = [];
    child.stderr!.on("data", (b: Buffer) => err.push(b.toString()));
    agents.set(name, { child, err });
    await waitFor(
      `${name}'s agent to tail`,
      () => {
        if (child.exitCode !== null) throw new Error(`agent ${name} exited: ${err.join("")}`);
        return err.join("").includes('"msg":"tailing"');
      },
      () => err.length,
    );
  };
  const app = async (phase: string) => {
    const r = await run(process.execPath, [APP, dir, phase, "20"], {
      env: { ...process.env, DEMO_NET: net },
    });
    return JSON.parse(r.stdout) as { failing?: { id: string; at: string }; counts: Record<string, number> };
  };
  const esCount = async (cuid: string): Promise<number> => {
    await fetch(`${es!.url}/${es!.prefix}-*/_refresh`, { method: "POST" });
    const r = await fetch(`${es!.url}/${es!.prefix}-*/_count?q=ikontainer_CUID:"${cuid}"`);
    return ((await r.json()) as { count?: number }).count ?? 0;
  };
  const cuid = async (name: string) =>
    (await run(process.execPath, [MAIN, "cuid", "--state-dir", join(dir, `${name}-state`)])).stdout.trim();
  const stored = async (name: string, n: number) => {
    const st = join(dir, `${name}-state`);
    await waitFor(
      `${n} stored lines of ${name}`,
      () => storedLines(st) >= n,
      () => storedLines(st),
    );
    if (es) {
      const c = await cuid(name);
      let seen = 0;
      await waitFor(
        `${n} lines of ${name} in Elasticsearch`,
        async () => {
          seen = await esCount(c);
          return seen >= n;
        },
        () => seen,
      );
    }
  };
  try {
    await start("web");
    await start("cart-1");
    await start("cart-2");
    const a = await app("before");
    await stored("cart-1", a.counts["cart-1"]!);
    const killed = agents.get("cart-1")!.child;
    const gone = new Promise((r) => killed.once("exit", r));
    killed.kill("SIGKILL");
    await gone; // cart-3 takes the IP only once cart-1 is dead
    await start("cart-3");
    const b = await app("after");
    const hostileId = "hostile-0000-request";
    appendFileSync(
      join(dir, "web", "app.log"),
      `${new Date().toISOString()} WARN ${HOSTILE} x-request-id=${hostileId}\n`,
    );
    await stored("web", a.counts.web! + b.counts.web! + 1);
    await stored("cart-2", a.counts["cart-2"]! + b.counts["cart-2"]!);
    await stored("cart-3", b.counts["cart-3"]!);
    for (const n of ["web", "cart-2", "cart-3"]) {
      const { child } = agents.get(n)!;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    const names = ["web", "cart-1", "cart-2", "cart-3"] as const;
    const cuids = Object.fromEntries(
      await Promise.all(names.map(async (n) => [n, await cuid(n)])),
    ) as Incident["cuids"];
    return {
      dir,
      ip: ips["cart-1"]!,
      requestId: a.failing!.id,
      at: Date.parse(a.failing!.at),
      cuids,
      stateDirs: names.map((n) => join(dir, `${n}-state`)),
      hostileId,
    };
  } finally {
    for (const { child } of agents.values())
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}
