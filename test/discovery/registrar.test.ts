import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { v7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dnsMetrics } from "../../src/discovery/metrics.js";
import type { InstanceIdentity } from "../../src/discovery/records.js";
import { DnsRegistrar } from "../../src/discovery/registrar.js";
import { makeKey, parseTsigSpec } from "../../src/discovery/tsig.js";
import type { UpdateTarget } from "../../src/discovery/update.js";
import { freePort, type KnotServer, startKnot } from "../fixtures/knot.js";

const runFile = promisify(execFile);
const CLI = new URL("../../dist/cli/main.js", import.meta.url).pathname;

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

let knot: KnotServer;
let target: UpdateTarget;
const dirs: string[] = [];

function identity(over: Partial<InstanceIdentity> = {}): InstanceIdentity {
  return {
    cuid: v7(),
    svcLabel: "web",
    namespace: "shop",
    zone: knot.zone,
    ip: "127.0.0.10",
    ports: [{ name: "http", port: 8080, proto: "tcp" }],
    pod: "web-7d9f-abcde",
    node: "node-1",
    started: new Date().toISOString(),
    ...over,
  };
}

function registrar(id: InstanceIdentity, over: Partial<ConstructorParameters<typeof DnsRegistrar>[0]> = {}) {
  return new DnsRegistrar({
    target,
    identity: id,
    ttl: 1000,
    leaseMs: 60_000,
    renewMs: 20_000,
    backoffMs: 100,
    maxBackoffMs: 400,
    logger: quiet,
    ...over,
  });
}

const inst = (id: InstanceIdentity) => `${id.cuid}.${id.svcLabel}.${id.namespace}.${knot.zone}`;
const svc = (id: InstanceIdentity) => `${id.svcLabel}.${id.namespace}.${knot.zone}`;
const rev = (ip: string) => `${ip.split(".").reverse().join(".")}.in-addr.arpa`;

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    const r = await runFile("node", [CLI, ...args], { env: { ...process.env, ...env }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

const ddnsFlags = () => [
  "--ddns-server",
  `127.0.0.1:${knot.port}`,
  "--zone",
  knot.zone,
  "--reverse-zone",
  knot.reverseZone,
];

beforeAll(async () => {
  knot = await startKnot();
  target = {
    server: { host: knot.host, port: knot.port },
    key: parseTsigSpec(knot.tsig),
    zone: knot.zone,
    reverseZone: knot.reverseZone,
    timeoutMs: 3000,
  };
});
afterAll(async () => {
  await knot?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("DnsRegistrar against knotd", () => {
  it("publishes instance, service, SRV and reverse records, renews the lease, and removes them on stop", async () => {
    const id = identity();
    const r = registrar(id, { leaseMs: 4000, renewMs: 700 });
    r.start();
    await r.whenRegistered();
    expect(await knot.dig(inst(id), "A")).toEqual(["127.0.0.10"]);
    const txt = (await knot.dig(inst(id), "TXT"))[0]!;
    expect(txt).toContain(`"cuid=${id.cuid}"`);
    expect(txt).toContain('"pod=web-7d9f-abcde"');
    expect(txt).toContain('"node=node-1"');
    expect(txt).toContain(`"started=${id.started}"`);
    expect(txt).toContain('"ports=http:8080/tcp"');
    expect(await knot.dig(svc(id), "A")).toEqual(["127.0.0.10"]);
    expect(await knot.dig(svc(id), "PTR")).toEqual([`${inst(id)}.`]);
    expect(await knot.dig(`_http._tcp.${svc(id)}`, "SRV")).toEqual([`0 10 8080 ${inst(id)}.`]);
    expect(await knot.dig(rev("127.0.0.10"), "PTR")).toEqual([`${inst(id)}.`]);

    const expires = (t: string) => /expires=([^"]+)/.exec(t)![1]!;
    const first = expires(txt);
    await new Promise((res) => r.once("renewed", res));
    const renewed = expires((await knot.dig(inst(id), "TXT"))[0]!);
    expect(Date.parse(renewed)).toBeGreaterThan(Date.parse(first));

    const result = await r.stop();
    expect(result?.removed).toBe(true);
    expect(await knot.dig(inst(id), "ANY")).toEqual([]);
    expect(await knot.dig(svc(id), "A")).toEqual([]);
    expect(await knot.dig(svc(id), "PTR")).toEqual([]);
    expect(await knot.dig(`_http._tcp.${svc(id)}`, "SRV")).toEqual([]);
    expect(await knot.dig(rev("127.0.0.10"), "PTR")).toEqual([]);
  });

  it("a newer instance of the same service reusing the IP keeps every record when the old one deregisters", async () => {
    const old = identity({ ip: "127.0.0.20", svcLabel: "reuse" });
    const newer = identity({ ip: "127.0.0.20", svcLabel: "reuse" });
    const a = registrar(old);
    a.start();
    await a.whenRegistered();
    const b = registrar(newer);
    b.start();
    await b.whenRegistered();
    expect(await knot.dig(rev("127.0.0.20"), "PTR")).toEqual([`${inst(newer)}.`]);

    const result = await a.stop();
    expect(result).toMatchObject({
      removed: true,
      reverseKeptFor: ["127.0.0.20"],
      addressKept: ["127.0.0.20"],
    });
    expect(await knot.dig(inst(old), "ANY")).toEqual([]);
    expect(await knot.dig(inst(newer), "A")).toEqual(["127.0.0.20"]);
    expect(await knot.dig(svc(newer), "A")).toEqual(["127.0.0.20"]);
    expect(await knot.dig(svc(newer), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(rev("127.0.0.20"), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(`_http._tcp.${svc(newer)}`, "SRV")).toEqual([`0 10 8080 ${inst(newer)}.`]);
    await b.stop();
    expect(await knot.dig(svc(newer), "A")).toEqual([]);
  });

  it("an instance of another service reusing the IP keeps its PTR; the old service's address goes", async () => {
    const old = identity({ ip: "127.0.0.21", svcLabel: "api" });
    const newer = identity({ ip: "127.0.0.21", svcLabel: "cart" });
    const a = registrar(old);
    a.start();
    await a.whenRegistered();
    const b = registrar(newer);
    b.start();
    await b.whenRegistered();
    await a.stop();
    expect(await knot.dig(svc(old), "A")).toEqual([]);
    expect(await knot.dig(rev("127.0.0.21"), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(svc(newer), "A")).toEqual(["127.0.0.21"]);
    await b.stop();
  });

  it("the prerequisite holds even when the old instance works from a stale view (another instance appears meanwhile)", async () => {
    const { deregisterInstance, publishedOf, registerInstance } = await import(
      "../../src/discovery/update.js"
    );
    const old = identity({ ip: "127.0.0.22", svcLabel: "race" });
    const newer = identity({ ip: "127.0.0.22", svcLabel: "race" });
    await registerInstance(target, old, { ttl: 1000, leaseMs: 60_000 });
    const attempts: number[] = [];
    // The newer instance registers right after the old one read the service's instance list (only itself):
    // the old one's guarded update must fail its prerequisite and re-read instead of deleting the shared A.
    const result = await deregisterInstance(target, publishedOf(old), async (attempt) => {
      attempts.push(attempt);
      if (attempt === 0) await registerInstance(target, newer, { ttl: 1000, leaseMs: 60_000 });
    });
    expect(attempts).toEqual([0, 1]);
    expect(result).toMatchObject({ removed: true, addressKept: ["127.0.0.22"] });
    expect(await knot.dig(inst(old), "ANY")).toEqual([]);
    expect(await knot.dig(svc(newer), "A")).toEqual(["127.0.0.22"]);
    expect(await knot.dig(svc(newer), "PTR")).toEqual([`${inst(newer)}.`]);
    await deregisterInstance(target, publishedOf(newer));
    expect(await knot.dig(svc(newer), "A")).toEqual([]);
  });

  it("keeps logging going: with the DNS server down at start it retries with backoff, then registers", async () => {
    const spare = await startKnot();
    await spare.halt();
    const id = identity({ ip: "127.0.0.30", svcLabel: "late" });
    const r = new DnsRegistrar({
      target: {
        ...target,
        server: { host: spare.host, port: spare.port },
        key: parseTsigSpec(spare.tsig),
        zone: spare.zone,
        reverseZone: spare.reverseZone,
      },
      identity: { ...id, zone: spare.zone },
      ttl: 1000,
      leaseMs: 60_000,
      renewMs: 20_000,
      backoffMs: 100,
      maxBackoffMs: 400,
      logger: quiet,
    });
    const retriesBefore = (await dnsMetrics.retries.get()).values[0]?.value ?? 0;
    const delays: number[] = [];
    r.on("retry", (_e, d: number) => delays.push(d));
    const t0 = Date.now();
    r.start();
    expect(Date.now() - t0).toBeLessThan(50); // start() never blocks the caller
    await new Promise((res) => setTimeout(res, 1200));
    expect(r.state).toBe("registering");
    expect(delays.length).toBeGreaterThanOrEqual(3);
    expect(delays.at(-1)!).toBeGreaterThan(delays[0]!); // backoff grows
    expect((await dnsMetrics.retries.get()).values[0]!.value - retriesBefore).toBe(delays.length);
    await spare.restart();
    await r.whenRegistered();
    expect(await spare.dig(`${id.cuid}.late.shop.${spare.zone}`, "A")).toEqual(["127.0.0.30"]);
    await r.stop();
    expect(await spare.dig(`${id.cuid}.late.shop.${spare.zone}`, "A")).toEqual([]);
    await spare.stop();
  });

  it("a wrong key gives a clear error naming the zone, the RCODE and BADSIG (registrar and CLI)", async () => {
    const id = identity({ svcLabel: "badkey" });
    const r = registrar(id, {
      target: { ...target, key: makeKey(knot.keyName, "hmac-sha256", randomBytes(32)) },
    });
    const err = new Promise<Error>((res) => r.once("retry", (e: Error) => res(e)));
    r.start();
    const e = await err;
    await r.stop();
    expect(e.message).toMatch(
      new RegExp(`registration in zone ${knot.zone} failed: .*NOTAUTH, TSIG error BADSIG`),
    );
    expect(await knot.dig(inst(id), "A")).toEqual([]);

    const dir = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(dir);
    const wrong = `${knot.keyName}:hmac-sha256:${randomBytes(32).toString("base64")}`;
    const res = await cli(
      [
        "ddns",
        "register",
        "--once",
        "--svc",
        "web",
        "--state-dir",
        dir,
        "--advertise-ip",
        "127.0.0.40",
        ...ddnsFlags(),
      ],
      {
        IKONTAINER_TSIG: wrong,
      },
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(
      /zone ikontainer\.test failed: server 127\.0\.0\.1:\d+ answered NOTAUTH, TSIG error BADSIG/,
    );
    expect(res.stderr).toContain("[IKON_ERR_DNS_REJECTED]");
    expect(res.stderr).not.toContain(wrong.split(":")[2]!); // the secret is never printed
  });

  it("ddns register stays in the foreground, renews, and deregisters on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(dir);
    const { spawn } = await import("node:child_process");
    const child = spawn(
      "node",
      [
        CLI,
        "ddns",
        "register",
        "--svc",
        "fg",
        "--state-dir",
        dir,
        "--advertise-ip",
        "127.0.0.42",
        "--lease",
        "3s",
        "--renew-interval",
        "500ms",
        ...ddnsFlags(),
      ],
      { env: { ...process.env, IKONTAINER_TSIG: knot.tsig }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    const deadline = Date.now() + 10_000;
    while (!out.includes("\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const name = out.trim();
    expect(name).toMatch(/\.fg\.default\.ikontainer\.test$/);
    const expiresAt = async () =>
      Date.parse(/expires=([^"]+)/.exec((await knot.dig(name, "TXT"))[0] ?? "")?.[1] ?? "");
    const first = await expiresAt();
    await new Promise((r) => setTimeout(r, 1500)); // past two renewals: still running, lease moved on
    expect(child.exitCode).toBeNull();
    expect(await expiresAt()).toBeGreaterThan(first);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(err).toContain("deregistered from DNS");
    expect(await knot.dig(name, "ANY")).toEqual([]);
    expect(await knot.dig("fg.default.ikontainer.test", "A")).toEqual([]);
  });

  it("an unreachable server at --once is a clear error too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(dir);
    const port = await freePort();
    const res = await cli([
      "ddns",
      "register",
      "--once",
      "--svc",
      "web",
      "--state-dir",
      dir,
      "--advertise-ip",
      "127.0.0.41",
      "--ddns-server",
      `127.0.0.1:${port}`,
      "--zone",
      knot.zone,
      "--tsig",
      knot.tsig,
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(
      /cannot reach DNS server 127\.0\.0\.1:\d+: ECONNREFUSED \[IKON_ERR_DNS_UNREACHABLE\]/,
    );
  });
});

describe("ikontainer ddns gc", () => {
  it("removes instances whose lease passed, keeps live ones and a newer holder of a reused IP", async () => {
    const keyFile = join(mkdtempSync(join(tmpdir(), "ikt-key-")), "tsig.key");
    dirs.push(join(keyFile, ".."));
    writeFileSync(
      keyFile,
      `key "${knot.keyName}" {\n  algorithm hmac-sha256;\n  secret "${knot.secret}";\n};\n`,
    );
    const stateStale = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    const stateLive = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(stateStale, stateLive);
    // A "killed -9" instance: registered once with a 1 s lease, never renewed, never deregistered.
    const stale = await cli([
      "ddns",
      "register",
      "--once",
      "--svc",
      "gcweb",
      "--dns-namespace",
      "ops",
      "--state-dir",
      stateStale,
      "--advertise-ip",
      "127.0.0.50",
      "--port",
      "http:8080/tcp",
      "--lease",
      "1s",
      "--tsig-file",
      keyFile,
      ...ddnsFlags(),
    ]);
    expect(stale.stderr).toBe("");
    expect(stale.code).toBe(0);
    const staleName = stale.stdout.trim();
    expect(staleName).toMatch(/^[0-9a-f-]{36}\.gcweb\.ops\.ikontainer\.test$/);
    // A live instance of the same service on another IP, with a long lease.
    const live = await cli([
      "ddns",
      "register",
      "--once",
      "--svc",
      "gcweb",
      "--dns-namespace",
      "ops",
      "--state-dir",
      stateLive,
      "--advertise-ip",
      "127.0.0.51",
      "--port",
      "http:8080/tcp",
      "--lease",
      "10m",
      "--tsig-file",
      keyFile,
      ...ddnsFlags(),
    ]);
    const liveName = live.stdout.trim();
    // A newer instance (another service) took the stale one's IP: its PTR must survive gc.
    const newer = identity({ ip: "127.0.0.50", svcLabel: "other", namespace: "ops" });
    const { registerInstance } = await import("../../src/discovery/update.js");
    await registerInstance(target, newer, { ttl: 1000, leaseMs: 600_000 });

    expect(await knot.dig("_http._tcp.gcweb.ops.ikontainer.test", "SRV")).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 1300));

    const dry = await cli(["ddns", "gc", "--dry-run", "--tsig-file", keyFile, ...ddnsFlags()]);
    expect(dry.stdout).toContain(`would remove ${staleName}`);
    expect(await knot.dig(staleName, "A")).toEqual(["127.0.0.50"]);

    const gc = await cli(["ddns", "gc", "--tsig-file", keyFile, ...ddnsFlags()]);
    expect(gc.code).toBe(0);
    expect(gc.stdout).toContain(`removed ${staleName}`);
    expect(gc.stdout).not.toContain(liveName);
    expect(await knot.dig(staleName, "ANY")).toEqual([]);
    expect(await knot.dig("gcweb.ops.ikontainer.test", "A")).toEqual(["127.0.0.51"]);
    expect(await knot.dig("gcweb.ops.ikontainer.test", "PTR")).toEqual([`${liveName}.`]);
    expect(await knot.dig("_http._tcp.gcweb.ops.ikontainer.test", "SRV")).toEqual([`0 10 8080 ${liveName}.`]);
    expect(await knot.dig(rev("127.0.0.50"), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(rev("127.0.0.51"), "PTR")).toEqual([`${liveName}.`]);

    const again = await cli(["ddns", "gc", "--tsig-file", keyFile, ...ddnsFlags()]);
    expect(again.stdout).toBe("");
  });

  it("--loop keeps collecting until SIGTERM", async () => {
    const { spawn } = await import("node:child_process");
    const state = mkdtempSync(join(tmpdir(), "ikt-ddns-"));
    dirs.push(state);
    const gc = spawn("node", [CLI, "ddns", "gc", "--loop", "200ms", ...ddnsFlags()], {
      env: { ...process.env, IKONTAINER_TSIG: knot.tsig },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    gc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((r) => gc.on("exit", (c) => r(c)));
    // Registered after gc started: it is found on a later round, once its 1 s lease has passed.
    const reg = await cli(
      [
        "ddns",
        "register",
        "--once",
        "--svc",
        "loopy",
        "--state-dir",
        state,
        "--advertise-ip",
        "127.0.0.52",
        "--lease",
        "1s",
        ...ddnsFlags(),
      ],
      { IKONTAINER_TSIG: knot.tsig },
    );
    const name = reg.stdout.trim();
    expect(await knot.dig(name, "A")).toEqual(["127.0.0.52"]);
    const deadline = Date.now() + 10_000;
    while (!out.includes(`removed ${name}`) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain(`removed ${name}`);
    expect(await knot.dig(name, "A")).toEqual([]);
    gc.kill("SIGTERM");
    expect(await exited).toBe(0);
  });
});
