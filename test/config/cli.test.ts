import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadAgentConfig, svcFromEnv } from "../../src/config/agent.js";
import { parseDuration, parseHostPort, parseSize } from "../../src/config/units.js";
import { IkontainerError } from "../../src/core/errors.js";
import { killStartedAgents, removeDir, runCli, startCli, stopAgent, tempDir } from "../helpers/agent.js";
import { waitUntil } from "../helpers/progress.js";

const dirs: string[] = [];
afterEach(() => {
  killStartedAgents(); // an agent a failed test left running, by PID
  for (const d of dirs.splice(0)) removeDir(d);
});
function dir() {
  const d = tempDir("ikon-cfg-");
  dirs.push(d);
  return d;
}

describe("settings: flags > environment > YAML file > defaults", () => {
  it("merges the three sources and types every value", () => {
    const d = dir();
    const file = join(d, "c.yaml");
    writeFileSync(file, "watch: [/a, /b]\nmax-line-bytes: 64KiB\nlinger: 2s\nsvc: from-file\nformat: json\n");
    const env = { IKONTAINER_LINGER: "750ms", IKONTAINER_SVC: "from-env" };
    const c = loadAgentConfig({ config: file, svc: "from-flag" }, { tail: true, env });
    expect(c).toMatchObject({
      watch: ["/a", "/b"],
      maxLineBytes: 65536,
      linger: 750,
      svc: "from-flag",
      format: "json",
    });
    expect(c.output).toEqual([`store:${join("./ikontainer-state", "store")}`]);
    expect(c.cuidVersion).toBe(7);
  });

  it("svc from the Downward API: <service>.<namespace>.<cluster-domain>", () => {
    expect(svcFromEnv({ IKONTAINER_SERVICE: "web", POD_NAMESPACE: "shop" })).toBe("web.shop.cluster.local");
    expect(
      svcFromEnv({ IKONTAINER_SERVICE: "web", POD_NAMESPACE: "shop", CLUSTER_DOMAIN: "k.example" }),
    ).toBe("web.shop.k.example");
    expect(svcFromEnv({})).toBeUndefined();
  });

  it("bad values name the setting", () => {
    const bad = (flags: Record<string, unknown>, env: Record<string, string> = {}) => {
      try {
        loadAgentConfig({ watch: ["/x"], svc: "s", ...flags }, { tail: true, env });
      } catch (e) {
        expect(e).toBeInstanceOf(IkontainerError);
        expect((e as IkontainerError).exitCode).toBe(2);
        return (e as Error).message;
      }
      throw new Error("no error");
    };
    expect(bad({ maxLineBytes: "lots" })).toMatch(/--max-line-bytes/);
    expect(bad({}, { IKONTAINER_LINGER: "soon" })).toMatch(/IKONTAINER_LINGER/);
    expect(bad({ requestIdRegex: "(" })).toMatch(/--request-id-regex/);
    expect(bad({ watch: undefined })).toMatch(/--watch/);
    expect(() => loadAgentConfig({ watch: ["/x"] }, { tail: true, env: {} })).toThrow(/--svc/);
  });

  it("units", () => {
    expect(parseDuration("5s", "x")).toBe(5000);
    expect(parseDuration("250ms", "x")).toBe(250);
    expect(parseSize("1MiB", "x")).toBe(1048576);
    expect(parseSize("10MB", "x")).toBe(10_000_000);
    expect(parseHostPort("[::1]:53", "x")).toEqual({ host: "::1", port: 53 });
    expect(() => parseHostPort("host:99999", "x")).toThrow(/HOST:PORT/);
  });
});

describe("the CLI", () => {
  it("a bad flag or value: one clear line, exit 2", async () => {
    const d = dir();
    const unknown = await runCli(["run", "--watch", d, "--svc", "s", "--bogus"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--bogus'/);
    const bad = await runCli(["run", "--watch", d, "--svc", "s", "--state-dir", d, "--linger", "later"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toEqual([
      'ikontainer: invalid --linger: expected a duration such as 500ms, 5s or 2m (got "later") [IKON_ERR_INVALID_SETTING]',
    ]);
    writeFileSync(join(d, "c.yaml"), "nonsense-key: 1\n");
    const file = await runCli(["run", "--config", join(d, "c.yaml"), "--svc", "s"]);
    expect(file.code).toBe(2);
    expect(file.stderr).toMatch(/unknown setting "nonsense-key" in config file/);
    const badOut = await runCli(["run", "--watch", d, "--svc", "s", "--state-dir", d, "--output", "ftp://x"]);
    expect(badOut.code).toBe(2);
    expect(badOut.stderr).toMatch(/invalid --output: unknown sink "ftp:\/\/x"/);
  });

  it("--help on every command", async () => {
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    const names = [...top.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]!).filter((n) => n !== "help");
    expect(names).toEqual(expect.arrayContaining(["run", "exec", "cuid"]));
    for (const n of names) {
      const h = await runCli([n, "--help"]);
      expect(h.code, n).toBe(0);
      expect(h.stdout, n).toMatch(/Usage: ikontainer /);
    }
  });
});

describe("CUID", () => {
  it("made once per state dir (v7 by default, v4 on request), kept across agent restarts, printed by `cuid`", async () => {
    const d = dir();
    const logs = join(d, "logs");
    mkdirSync(logs);
    const args = (state: string, extra: string[] = []) => [
      "run",
      "--watch",
      logs,
      "--state-dir",
      state,
      "--svc",
      "s",
      ...extra,
    ];
    const a = startCli(args(join(d, "s1")));
    await a.waitForLog("tailing");
    await stopAgent(a);
    const first = (await runCli(["cuid", "--state-dir", join(d, "s1")])).stdout.trim();
    expect(first).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const b = startCli(args(join(d, "s1")));
    await b.waitForLog("tailing");
    await stopAgent(b);
    expect((await runCli(["cuid", "--state-dir", join(d, "s1")])).stdout.trim()).toBe(first);
    const c = startCli(args(join(d, "s2"), ["--cuid-version", "4"]));
    const started = await c.waitForLog("agent started");
    await stopAgent(c);
    expect(started.cuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/);
    expect(JSON.parse(readFileSync(join(d, "s2", "cuid.json"), "utf8")).cuid).toBe(started.cuid);
    const none = await runCli(["cuid", "--state-dir", join(d, "nothing")]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no CUID in/);
  });
});

describe("observability and shutdown", () => {
  it("serves /metrics, /healthz, /readyz and exits cleanly on SIGTERM", async () => {
    const d = dir();
    const logs = join(d, "logs");
    mkdirSync(logs);
    writeFileSync(join(logs, "a.log"), "one\ntwo\n");
    const a = startCli([
      "run",
      "--watch",
      logs,
      "--state-dir",
      join(d, "s"),
      "--svc",
      "s",
      "--metrics-port",
      "0",
      "--output",
      `file:${join(d, "o")}`,
    ]);
    const { port } = await a.waitForLog("serving /metrics, /healthz, /readyz");
    await a.waitForLog("tailing");
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    await waitUntil(
      async () => {
        const text = await (await fetch(`${base}/metrics`)).text();
        const out = /ikontainer_lines_out_total\{sink="file:[^"]+"\} (\d+)/.exec(text)?.[1];
        return { done: out === "2", progress: out };
      },
      { what: "both lines counted out in /metrics" },
    );
    const body = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      "ikontainer_lines_in_total 2",
      "ikontainer_bytes_in_total 6",
      "ikontainer_files_watched 1",
      "ikontainer_lag_bytes",
      "ikontainer_long_line_pieces_total 0",
    ])
      expect(body).toContain(name);
    // Exit code 0 after SIGTERM (a hang is caught by the test's time-out; speed is not asserted here).
    a.child.kill("SIGTERM");
    expect(await a.exited).toEqual({ code: 0, signal: null });
  });
});
