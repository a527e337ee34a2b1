import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CLI, removeDir, tempDir } from "../helpers/agent.js";

/**
 * Errors an operator can hit end in one IKON_ERR line naming the flag, a non-zero exit and no stack trace;
 * the agent never spins on a state dir it cannot create.
 */

vi.setConfig({ testTimeout: 90_000 });

let dir: string;
let busy: Server;
let busyPort: number;
const cleanup: Array<() => void> = [];

beforeAll(async () => {
  dir = tempDir("ikon-errors-");
  mkdirSync(join(dir, "w"));
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
  busyPort = (busy.address() as { port: number }).port;
});
afterAll(() => {
  busy.close();
  for (const f of cleanup.reverse()) f();
  removeDir(dir);
});

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** True when the process ended on its own or on SIGTERM (not SIGKILL). */
  ended: boolean;
}

/**
 * Runs the CLI. It gets SIGTERM (which must end it) as soon as its stderr satisfies `stopWhen`, or when it is
 * still running after `graceMs`; then, after as long again, SIGKILL; a process that needed SIGKILL is reported
 * (`ended: false`).
 */
function cli(
  args: string[],
  opts: { graceMs?: number; env?: NodeJS.ProcessEnv; stopWhen?: (stderr: string) => boolean } = {},
): Promise<Result> {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: dir,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, IKONTAINER_SERVICE: "", ...opts.env },
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
    if (opts.stopWhen?.(stderr)) child.kill("SIGTERM");
  });
  let killed = false;
  const grace = opts.graceMs ?? 15_000;
  const term = setTimeout(() => child.kill("SIGTERM"), grace);
  const kill = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, grace * 2);
  return new Promise((resolve) =>
    child.once("close", (code, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code, signal, stderr, ended: !killed });
    }),
  );
}

/** `run` on the folder `w` with state in `stateDir` (relative to the test's folder), plus `extra` flags. */
const runArgs = (stateDir: string, ...extra: string[]) => [
  "run",
  "--svc",
  "s",
  "--watch",
  "w",
  "--state-dir",
  stateDir,
  ...extra,
];

const noStack = (stderr: string) => expect(stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);

describe("listen errors name the flag", () => {
  it("--metrics-port already in use", async () => {
    const r = await cli(
      runArgs("st-metrics", "--metrics-host", "127.0.0.1", "--metrics-port", String(busyPort)),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("IKON_ERR_LISTEN");
    expect(r.stderr).toContain("--metrics-port");
    expect(r.stderr).toContain("EADDRINUSE");
    noStack(r.stderr);
  });

  it("--metrics-host that does not resolve", async () => {
    const r = await cli(runArgs("st-host", "--metrics-host", "no-such-host.invalid", "--metrics-port", "0"));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("IKON_ERR_LISTEN");
    expect(r.stderr).toContain("does not resolve");
    expect(r.stderr).toContain("--metrics-host");
    noStack(r.stderr);
  });

  it("proxy and ambassador --listen already in use; their defaults differ", async () => {
    for (const args of [
      ["proxy", "--listen", `127.0.0.1:${busyPort}`],
      ["ambassador", "--listen", `127.0.0.1:${busyPort}`, "--service", "_http._tcp.web.example.org"],
    ]) {
      const r = await cli(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("IKON_ERR_LISTEN");
      expect(r.stderr).toContain("--listen");
      expect(r.stderr).toContain("EADDRINUSE");
      noStack(r.stderr);
    }
    const help = (cmd: string) => execFileSync(process.execPath, [CLI, cmd, "--help"], { encoding: "utf8" });
    const def = (text: string) => /--listen <HOST:PORT>[\s\S]*?default:\s*(\S+)\)/.exec(text)?.[1];
    expect(def(help("proxy"))).toBe("127.0.0.1:1080");
    expect(def(help("ambassador"))).toBe("127.0.0.1:1081");
  });
});

describe("state dir errors", () => {
  it("--state-dir /proc/1/nope: a clear error and exit, no mkdir spin", async () => {
    const r = await cli(runArgs("/proc/1/nope"));
    expect(r.ended).toBe(true); // ended by itself or by SIGTERM, never needing SIGKILL
    expect(r.signal).toBeNull(); // by itself, with an error
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("IKON_ERR_STATE_DIR");
    expect(r.stderr).toContain("/proc/1/nope");
    noStack(r.stderr);
  });

  it("a read-only state dir says EROFS, not ENOENT", async () => {
    const ro = join(dir, "ro");
    mkdirSync(ro);
    // a real read-only file system (tmpfs mounted ro; the tests run as root)
    execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro]);
    cleanup.push(() => execFileSync("umount", [ro]));
    for (const stateDir of [ro, join(ro, "sub")]) {
      const r = await cli(runArgs(stateDir));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("IKON_ERR_STATE_DIR");
      expect(r.stderr).toContain("EROFS");
      expect(r.stderr).not.toContain("ENOENT");
      noStack(r.stderr);
    }
  });
});

describe("Elasticsearch settings and replies", () => {
  it("credentials inside an elasticsearch: URL are rejected, and not echoed", async () => {
    const r = await cli(
      runArgs("st-es-url", "--output", "elasticsearch:http://elastic:S3cretPASS@127.0.0.1:9"),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("IKON_ERR_INVALID_SETTING");
    expect(r.stderr).toContain("credentials in the URL");
    expect(r.stderr).not.toContain("S3cretPASS");
  });

  it("a 401 is logged with its status and reason, not as an empty error", async () => {
    // An Elasticsearch stand-in that must misbehave on purpose: it refuses every request with 401.
    const es: HttpServer = createHttpServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(401, { "content-type": "application/json", "x-elastic-product": "Elasticsearch" });
        res.end(
          JSON.stringify({
            error: { type: "security_exception", reason: "unable to authenticate user [elastic]" },
            status: 401,
          }),
        );
      });
    });
    await new Promise<void>((r) => es.listen(0, "127.0.0.1", r));
    cleanup.push(() => es.close());
    writeFileSync(join(dir, "w", "app.log"), "hello\n");
    const port = (es.address() as { port: number }).port;
    // Stopped once it has logged the refusal (waited for, not a fixed 4 s run).
    const r = await cli(runArgs("st-es-401", "--output", `elasticsearch:http://127.0.0.1:${port}`), {
      stopWhen: (stderr) => stderr.includes("unable to authenticate user"),
    });
    const warns = r.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { level: number; err?: string })
      .filter((l) => l.level >= 40 && l.err !== undefined);
    expect(warns.length).toBeGreaterThan(0);
    for (const w of warns) expect(w.err).toMatch(/HTTP 401/);
    expect(r.stderr).toContain("unable to authenticate user");
  });
});

describe("node mode", () => {
  it("--mode node with --watch says --watch is ignored", async () => {
    const r = await cli(runArgs("st-node", "--mode", "node", "--pod-log-dir", "w"), {
      stopWhen: (stderr) => stderr.includes("--watch is ignored"),
    });
    expect(r.ended).toBe(true);
    expect(r.stderr).toContain("--watch is ignored in --mode node");
  });
});

describe("tail settings", () => {
  it("--max-concurrent-reads below 1 is refused with the flag named (the tailer could never read)", async () => {
    const zero = await cli(runArgs("st-reads-0", "--max-concurrent-reads", "0"), { graceMs: 5_000 });
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain("IKON_ERR_INVALID_SETTING");
    expect(zero.stderr).toContain("--max-concurrent-reads");
    noStack(zero.stderr);
    const word = await cli(runArgs("st-reads-x"), {
      graceMs: 5_000,
      env: { IKONTAINER_MAX_CONCURRENT_READS: "many" },
    });
    expect(word.code).toBe(2);
    expect(word.stderr).toContain("IKON_ERR_INVALID_SETTING");
    noStack(word.stderr);
  });
});
