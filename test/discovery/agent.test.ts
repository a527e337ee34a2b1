import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type KnotServer, startKnot } from "../fixtures/knot.js";
import { valueWhen } from "../helpers/progress.js";

const CLI = new URL("../../dist/cli/main.js", import.meta.url).pathname;
let knot: KnotServer;
const dirs: string[] = [];

beforeAll(async () => {
  knot = await startKnot();
});
afterAll(async () => {
  await knot?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function agent(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn("node", [CLI, ...args], {
    env: { ...process.env, IKONTAINER_TSIG: knot.tsig, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

const ddns = () => [
  "--ddns-server",
  `127.0.0.1:${knot.port}`,
  "--zone",
  knot.zone,
  "--reverse-zone",
  knot.reverseZone,
];

/** A name's A records once it is published (or gone), waiting on progress. */
const addressWhen = (name: string, state: "published" | "gone") =>
  valueWhen(
    () => knot.dig(name, "A"),
    (v) => (state === "published" ? v.length > 0 : v.length === 0),
  );

describe("run and exec publish the instance in DNS", () => {
  it("exec: registers from the Downward-API env after start, deregisters when the child exits", async () => {
    const state = mkdtempSync(join(tmpdir(), "ikt-agent-"));
    dirs.push(state);
    const a = agent(
      [
        "exec",
        "--svc",
        "web.shop.cluster.local",
        "--state-dir",
        state,
        "--port",
        "http:8080/tcp",
        ...ddns(),
        "--",
        "node",
        "-e",
        "console.log('hello'); setTimeout(() => {}, 2500)",
      ],
      { POD_IP: "127.0.0.60", POD_NAMESPACE: "shop", POD_NAME: "web-abc", NODE_NAME: "node-7" },
    );
    const cuidFile = join(state, "cuid.json");
    const cuid = await valueWhen(
      async () => {
        try {
          return (JSON.parse(readFileSync(cuidFile, "utf8")) as { cuid: string }).cuid;
        } catch {
          return "";
        }
      },
      (c) => c !== "",
    );
    const name = `${cuid}.web.shop.${knot.zone}`;
    expect(
      await valueWhen(
        () => knot.dig(name, "A"),
        (v) => v.length > 0,
      ),
    ).toEqual(["127.0.0.60"]);
    const txt = (await knot.dig(name, "TXT"))[0]!;
    expect(txt).toContain('"pod=web-abc"');
    expect(txt).toContain('"node=node-7"');
    expect(await knot.dig(`_http._tcp.web.shop.${knot.zone}`, "SRV")).toEqual([`0 10 8080 ${name}.`]);
    expect(await knot.dig("60.0.0.127.in-addr.arpa", "PTR")).toEqual([`${name}.`]);
    expect(await a.exited).toBe(0);
    expect(a.out()).toContain("hello");
    expect(await knot.dig(name, "ANY")).toEqual([]);
    expect(await knot.dig("60.0.0.127.in-addr.arpa", "PTR")).toEqual([]);
    expect(a.err()).toContain("deregistered from DNS");
    expect(a.err()).not.toContain(knot.secret);
  });

  it("run: registers and deregisters on SIGTERM", async () => {
    const state = mkdtempSync(join(tmpdir(), "ikt-agent-"));
    const logs = mkdtempSync(join(tmpdir(), "ikt-logs-"));
    dirs.push(state, logs);
    const a = agent(
      [
        "run",
        "--watch",
        logs,
        "--svc",
        "tailer",
        "--state-dir",
        state,
        "--advertise-ip",
        "127.0.0.61",
        ...ddns(),
      ],
      { POD_NAMESPACE: "ops" },
    );
    const svcName = `tailer.ops.${knot.zone}`;
    const ptr = await valueWhen(
      () => knot.dig(svcName, "PTR"),
      (v) => v.length > 0,
    );
    expect(ptr).toHaveLength(1);
    await valueWhen(
      async () => a.err(),
      (e) => e.includes('"tailing"'),
    ); // its SIGTERM handler is set from here on
    a.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    expect(await knot.dig(svcName, "PTR")).toEqual([]);
    expect(await knot.dig(svcName, "A")).toEqual([]);
  });

  it("with the DNS server unreachable, exec's logging goes on and the failure is logged with retries", async () => {
    const state = mkdtempSync(join(tmpdir(), "ikt-agent-"));
    dirs.push(state);
    const dead = await freePort();
    const a = agent(
      [
        "exec",
        "--svc",
        "web",
        "--state-dir",
        state,
        "--advertise-ip",
        "127.0.0.62",
        "--ddns-server",
        `127.0.0.1:${dead}`,
        "--zone",
        knot.zone,
        "--",
        "node",
        "-e",
        "let i = 0; const t = setInterval(() => { console.log('line ' + i++); if (i === 5) clearInterval(t); }, 300)",
      ],
      {},
    );
    expect(await a.exited).toBe(0);
    for (let i = 0; i < 5; i++) expect(a.out()).toContain(`line ${i}`);
    expect(a.err()).toMatch(/DNS register failed; retrying/);
    expect(a.err()).toContain("IKON_ERR_DNS_UNREACHABLE");
  });

  it("--register-when-ready publishes only once the app accepts connections on the advertised port", async () => {
    const state = mkdtempSync(join(tmpdir(), "ikt-agent-"));
    dirs.push(state);
    const port = await freePort("127.0.0.63");
    const app = `setTimeout(() => { require("node:http").createServer((q, s) => s.end("up")).listen(${port}, "127.0.0.63", () => console.log("listening")); }, 1500); setTimeout(() => process.exit(0), 3500);`;
    const a = agent(
      [
        "exec",
        "--svc",
        "slow",
        "--state-dir",
        state,
        "--advertise-ip",
        "127.0.0.63",
        "--port",
        `http:${port}/tcp`,
        "--register-when-ready",
        ...ddns(),
        "--",
        "node",
        "-e",
        app,
      ],
      { POD_NAMESPACE: "shop" },
    );
    const svcName = `slow.shop.${knot.zone}`;
    await valueWhen(
      async () => a.err(),
      (e) => e.includes("waiting for the advertised ports"),
    );
    expect(a.out()).not.toContain("listening");
    expect(await knot.dig(svcName, "A")).toEqual([]);
    expect(
      await valueWhen(
        () => knot.dig(svcName, "A"),
        (v) => v.length > 0,
      ),
    ).toEqual(["127.0.0.63"]);
    expect(a.out()).toContain("listening");
    expect(await a.exited).toBe(0);
    expect(await knot.dig(svcName, "A")).toEqual([]);
  });

  it("run: on SIGTERM the records go at once, even when the drain runs into the stop deadline", async () => {
    // The part that misbehaves on purpose: a "fluentd" that takes the connection and the bytes and never acks,
    // so with --no-buffer the drain waits until the stop deadline and the agent exits 1 from there.
    const swallowed: Buffer[] = [];
    const sockets = new Set<Socket>();
    const silent = createServer((s) => {
      sockets.add(s);
      s.on("data", (d: Buffer) => swallowed.push(d));
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as AddressInfo).port;
    const state = mkdtempSync(join(tmpdir(), "ikt-agent-"));
    const logs = mkdtempSync(join(tmpdir(), "ikt-logs-"));
    dirs.push(state, logs);
    try {
      const a = agent(
        [
          "run",
          "--watch",
          logs,
          "--svc",
          "stuck",
          "--state-dir",
          state,
          "--advertise-ip",
          "127.0.0.65",
          "--output",
          `fluentd://127.0.0.1:${port}`,
          "--no-buffer",
          ...ddns(),
        ],
        { POD_NAMESPACE: "ops" },
      );
      const svcName = `stuck.ops.${knot.zone}`;
      expect(await addressWhen(svcName, "published")).toEqual(["127.0.0.65"]);
      await valueWhen(
        async () => a.err(),
        (e) => e.includes('"tailing"'),
      );
      writeFileSync(join(logs, "app.log"), "one\ntwo\n");
      await valueWhen(
        async () => swallowed.length,
        (n) => n > 0,
      ); // a batch is out, waiting for an ack that never comes
      a.child.kill("SIGTERM");
      expect(await addressWhen(svcName, "gone")).toEqual([]);
      expect(await knot.dig(svcName, "PTR")).toEqual([]);
      expect(await a.exited).toBe(1); // the drain deadline: those lines are read again at the next start
      expect(a.err()).toContain("drain did not finish in time");
      expect(a.err().match(/deregistered from DNS/g)).toHaveLength(1);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  const drainingApp =
    "console.log('up'); process.on('SIGTERM', () => { console.log('draining'); setTimeout(() => { console.log('bye'); process.exit(0); }, 2000); }); setInterval(() => {}, 1000);";
  const drainer = (ip: string, stopDelay: string) => {
    const state = mkdtempSync(join(tmpdir(), "ikt-agent-"));
    dirs.push(state);
    const extra = ["--state-dir", state, "--advertise-ip", ip, "--stop-delay", stopDelay, ...ddns()];
    return agent(["exec", "--svc", "drainer", ...extra, "--", "node", "-e", drainingApp], {
      POD_NAMESPACE: "shop",
    });
  };

  it("exec: on SIGTERM the records go first; the child hears SIGTERM only after --stop-delay", async () => {
    const a = drainer("127.0.0.64", "3s");
    const svcName = `drainer.shop.${knot.zone}`;
    expect(await addressWhen(svcName, "published")).toEqual(["127.0.0.64"]);
    await valueWhen(
      async () => a.out(),
      (o) => o.includes("up"),
    );
    a.child.kill("SIGTERM");
    expect(await addressWhen(svcName, "gone")).toEqual([]);
    // Gone from DNS while the app still serves: it has not even been told to stop yet (3 s margin).
    expect(a.out()).not.toContain("draining");
    await valueWhen(
      async () => a.out(),
      (o) => o.includes("draining"),
    );
    expect(a.out()).not.toContain("bye");
    expect(await a.exited).toBe(0);
    expect(a.out()).toContain("bye");
    expect(a.err().match(/deregistered from DNS/g)).toHaveLength(1);
    expect(a.err()).toContain("passing SIGTERM to the child after the delay");
  });

  it("exec: a second SIGTERM during --stop-delay reaches the child at once", async () => {
    const a = drainer("127.0.0.65", "10m");
    const svcName = `drainer.shop.${knot.zone}`;
    expect(await addressWhen(svcName, "published")).toEqual(["127.0.0.65"]);
    await valueWhen(
      async () => a.out(),
      (o) => o.includes("up"),
    );
    a.child.kill("SIGTERM");
    await valueWhen(
      async () => a.err(),
      (e) => e.includes("passing SIGTERM to the child after the delay"),
    );
    expect(a.out()).not.toContain("draining");
    a.child.kill("SIGTERM");
    // Well inside the test timeout, far from the 10 minutes of the delay.
    expect(await a.exited).toBe(0);
    expect(a.out()).toContain("bye");
  });
});
