import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { expect } from "vitest";
import { type Cluster, type Pod, REPO, sleep, waitUntil } from "./harness.js";

/**
 * `resolve` and the SOCKS5 proxy, run on the host, following the sidecar Deployment of sidecar-dns.ts as it is
 * scaled 1 → 3, rolled (`kubectl rollout restart`) and scaled back to 1, while a bounded client loop goes
 * through the proxy to the service name (issue 12 item 2d).
 */

const CLI = join(REPO, "dist/cli/main.js");
/** The app's preStop sleep: the records' TTL (--dns-ttl, 5 s by default) + 1 s, as docs/dns.md recommends
 * for `run` sidecars (Kubernetes sends SIGTERM to every container at once; the sidecar leaves DNS then). */
const PRESTOP_SECONDS = 6;
const HTTP_PORT = 8080;
/** Bounds of the client loop (whichever comes first; the loop normally stops when the roll is over). */
const MAX_REQUESTS = 4000;
const MAX_LOOP_MS = 240_000;

export interface RolloutContext {
  ns: string;
  zone: string;
  gateway: string;
  /** The Deployment's pods that run with both containers up and are not being deleted. */
  livePods: () => Pod[];
  cuidOf: (p: Pod) => string;
}

interface Resolved {
  cuid: string;
  address: string;
  pod: string;
}

function resolveService(ctx: RolloutContext): Resolved[] {
  try {
    return execFileSync(
      process.execPath,
      [
        CLI,
        "resolve",
        `web.${ctx.ns}.${ctx.zone}`,
        "--dns-server",
        `${ctx.gateway}:53`,
        "--zone",
        ctx.zone,
        "--json",
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    )
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Resolved);
  } catch {
    return []; // no live instance (exit 1)
  }
}

const key = (xs: Array<{ cuid: string; address: string }>) => xs.map((x) => `${x.cuid}@${x.address}`).sort();

/** Waits until `resolve` lists exactly the live pods (CUID from each pod's own state, address its pod IP). */
async function resolveMatchesPods(
  ctx: RolloutContext,
  replicas: number,
  extra: (pods: Pod[]) => boolean = () => true,
): Promise<Pod[]> {
  let pods: Pod[] = [];
  let got: string[] = [];
  let want: string[] = [];
  try {
    await waitUntil(
      `resolve lists exactly the ${replicas} live pod(s)`,
      () => {
        pods = ctx.livePods();
        got = key(resolveService(ctx));
        if (pods.length !== replicas || !extra(pods)) return false;
        try {
          want = key(pods.map((p) => ({ cuid: ctx.cuidOf(p), address: p.status.podIP! })));
        } catch {
          return false; // a new sidecar has not written its CUID yet
        }
        return JSON.stringify(got) === JSON.stringify(want);
      },
      { stallMs: 120_000, progress: () => [got, pods.map((p) => p.metadata.name)] },
    );
  } catch (e) {
    const seen = pods.map((p) => `${p.metadata.name} ${p.status.podIP}`);
    throw new Error(
      `${(e as Error).message}: pods ${JSON.stringify(seen)}, want ${want}, resolve gave ${got}`,
    );
  }
  return pods;
}

/** The proxy on the host, on a port the kernel picks; resolves the zone's names through Knot. */
async function startProxy(
  ctx: RolloutContext,
): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  const child = spawn(
    process.execPath,
    [CLI, "proxy", "--listen", "127.0.0.1:0", "--dns-server", `${ctx.gateway}:53`, "--zone", ctx.zone],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr!.on("data", (d: Buffer) => {
    log += d.toString();
  });
  let port = 0;
  await waitUntil("the proxy listening", () => {
    if (child.exitCode !== null) throw new Error(`proxy exited ${child.exitCode}: ${log}`);
    port = Number(/"listen":"127\.0\.0\.1:(\d+)"/.exec(log)?.[1] ?? 0);
    return port > 0;
  });
  return { child, port, log: () => log };
}

async function stopByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  process.kill(child.pid!, "SIGTERM");
  await Promise.race([exited, sleep(15_000)]);
  if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
}

interface Reply {
  at: number;
  ok: boolean;
  pod?: string;
  why?: string;
}

/** One request through the proxy to the service name (port 80 → its `_http._tcp` SRV → the pods' 8080). */
function request(proxyPort: number, url: string): Promise<Reply> {
  return new Promise((resolve) => {
    execFile(
      "curl",
      ["-sS", "--max-time", "10", "-x", `socks5h://127.0.0.1:${proxyPort}`, url],
      { encoding: "utf8" },
      (err, stdout, stderr) => {
        const at = Date.now();
        if (err) resolve({ at, ok: false, why: `curl exit ${err.code}: ${stderr.trim()}` });
        else resolve({ at, ok: true, pod: stdout.trim() });
      },
    );
  });
}

/** The patch that gives the test Deployment an HTTP server to reach and the sidecar its `http` port. */
function httpPatch(c: Cluster, ns: string, replicas: number) {
  const dep = c.kubectlJson<{
    spec: { template: { spec: { containers: Array<{ name: string; args?: string[] }> } } };
  }>(["-n", ns, "get", "deployment", "web"]);
  const args = dep.spec.template.spec.containers.find((x) => x.name === "ikontainer")!.args!;
  return {
    spec: {
      replicas,
      template: {
        spec: {
          // the preStop sleep and the app's own stop fit in
          terminationGracePeriodSeconds: PRESTOP_SECONDS + 6,
          containers: [
            {
              name: "http",
              image: c.env.IKONTAINER_K8S_BUSYBOX_IMAGE,
              imagePullPolicy: "Never",
              // answers with the pod's name, so the client loop knows which instance served it; stops serving
              // at SIGTERM, as most servers do (httpd as PID 1 would ignore it and serve on until SIGKILL)
              command: [
                "sh",
                "-c",
                `mkdir -p /tmp/www; echo "$HOSTNAME" >/tmp/www/index.html; httpd -f -p ${HTTP_PORT} -h /tmp/www & ` +
                  "pid=$!; trap 'kill $pid; exit 0' TERM; wait $pid",
              ],
              ports: [{ name: "http", containerPort: HTTP_PORT }],
              lifecycle: { preStop: { sleep: { seconds: PRESTOP_SECONDS } } },
            },
            { name: "ikontainer", args: [...args, "--port", `http:${HTTP_PORT}/tcp`] },
          ],
        },
      },
    },
  };
}

export async function checkResolveAndProxyFollowRollout(c: Cluster, ctx: RolloutContext): Promise<void> {
  const { ns } = ctx;
  c.kubectl([
    "-n",
    ns,
    "patch",
    "deployment",
    "web",
    "--type",
    "strategic",
    "-p",
    JSON.stringify(httpPatch(c, ns, 1)),
  ]);
  c.kubectl(["-n", ns, "rollout", "status", "deployment/web", "--timeout=240s"]);
  const withHttp = (pods: Pod[]) =>
    pods.every((p) => (p.status.containerStatuses ?? []).some((s) => s.name === "http" && s.state.running));
  await resolveMatchesPods(ctx, 1, withHttp);

  const proxy = await startProxy(ctx);
  let stop = false;
  try {
    const url = `http://web.${ns}.${ctx.zone}/`;
    expect((await request(proxy.port, url)).ok, "a first request through the proxy").toBe(true);

    c.kubectl(["-n", ns, "scale", "deployment/web", "--replicas=3"]);
    const before = await resolveMatchesPods(ctx, 3, withHttp);
    const oldNames = new Set(before.map((p) => p.metadata.name));
    // read now: a deleted pod's emptyDir (its cuid.json) goes with it
    const oldCuids = new Set(before.map(ctx.cuidOf));
    const listed = resolveService(ctx);
    for (const p of before) {
      const r = listed.find((x) => x.cuid === ctx.cuidOf(p));
      expect(r?.pod).toBe(p.metadata.name);
    }

    // the client loop, bounded in count and time, runs through the whole roll
    const replies: Reply[] = [];
    const t0 = Date.now();
    const loop = (async () => {
      while (!stop && replies.length < MAX_REQUESTS && Date.now() - t0 < MAX_LOOP_MS)
        replies.push(await request(proxy.port, url));
    })();

    // the proxy follows the scale-out: every one of the 3 pods answers before the roll starts
    const servedSoFar = () => new Set(replies.filter((r) => r.ok).map((r) => r.pod ?? ""));
    await waitUntil(
      "replies from each of the 3 pods",
      () => [...oldNames].every((n) => servedSoFar().has(n)),
      {
        stallMs: 60_000,
        progress: () => replies.length,
      },
    );
    c.kubectl(["-n", ns, "rollout", "restart", "deployment/web"]);
    c.kubectl(["-n", ns, "rollout", "status", "deployment/web", "--timeout=240s"]);
    const after = await resolveMatchesPods(
      ctx,
      3,
      (pods) => withHttp(pods) && pods.every((p) => !oldNames.has(p.metadata.name)),
    );
    // resolve names none of the old instances
    expect(resolveService(ctx).filter((r) => oldCuids.has(r.cuid))).toEqual([]);
    // once every cached answer (TTL 5 s) has expired, replies come from the new pods only
    const settled = Date.now() + 6000;
    await waitUntil("requests after the answers' TTL", () => replies.some((r) => r.at > settled + 2000));
    stop = true;
    await loop;

    const failed = replies.filter((r) => !r.ok);
    const servedBy = servedSoFar();
    const perPod = new Map<string, number>();
    for (const r of replies) if (r.ok) perPod.set(r.pod!, (perPod.get(r.pod!) ?? 0) + 1);
    console.log(
      `dns-rollout: ${replies.length} requests through the proxy during the roll, ${failed.length} failed; ` +
        `served by ${JSON.stringify(Object.fromEntries(perPod))}`,
    );
    expect(replies.length, "the loop ran through the roll").toBeGreaterThan(20);
    expect(
      failed.map((r) => r.why),
      "requests that failed during the roll",
    ).toEqual([]);
    const newNames = new Set(after.map((p) => p.metadata.name));
    expect(
      [...servedBy].filter((n) => !oldNames.has(n) && !newNames.has(n)),
      "replies from unknown pods",
    ).toEqual([]);
    const late = replies.filter((r) => r.at > settled);
    expect(late.length).toBeGreaterThan(0);
    expect(
      late.filter((r) => !newNames.has(r.pod ?? "")),
      "after the TTL only new pods answer",
    ).toEqual([]);
    // the proxy logs each connection with the chosen instance's CUID
    const newCuids = after.map(ctx.cuidOf);
    for (const cuid of newCuids) expect(proxy.log()).toContain(`"peer_CUID":"${cuid}"`);

    c.kubectl(["-n", ns, "scale", "deployment/web", "--replicas=1"]);
    const last = await resolveMatchesPods(ctx, 1);
    expect(newNames.has(last[0]!.metadata.name)).toBe(true);
  } finally {
    stop = true;
    await stopByPid(proxy.child);
  }
  expect(proxy.child.exitCode ?? proxy.child.signalCode, "the proxy stopped").not.toBeNull();
}
