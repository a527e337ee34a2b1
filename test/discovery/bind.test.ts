import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uuidV7 as v7 } from "../../src/core/cuid.js";
import type { InstanceIdentity } from "../../src/discovery/records.js";
import { readTsigFile } from "../../src/discovery/tsig.js";
import {
  deregisterInstance,
  publishedOf,
  registerInstance,
  type UpdateTarget,
} from "../../src/discovery/update.js";
import { freePort } from "../fixtures/knot.js";
import { waitUntil } from "../helpers/progress.js";
import { leaseEnd, leasePassed } from "./registrar-helpers.js";

/**
 * The BIND configuration documented in docs/dns.md, run for real: named with the key, update-policy and
 * allow-transfer from the docs; ikontainer reads BIND's own key file; assertions with BIND's dig.
 */
const run = promisify(execFile);
const CLI = new URL("../../dist/cli/main.js", import.meta.url).pathname;
const ZONE = "svc.example.org";
const REV = "127.in-addr.arpa";

let dir: string;
let port: number;
let named: ChildProcess;
let keyFile: string;
let target: UpdateTarget;

const dig = async (name: string, type: string): Promise<string[]> => {
  const { stdout } = await run("dig", [
    "@127.0.0.1",
    "-p",
    String(port),
    "+tcp",
    "+short",
    "+time=2",
    "+tries=1",
    name,
    type,
  ]);
  return stdout.split("\n").filter((l) => l.trim() !== "");
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ikt-bind-"));
  port = await freePort();
  keyFile = join(dir, "ikontainer.key");
  writeFileSync(
    keyFile,
    `key "ikontainer" {\n    algorithm hmac-sha256;\n    secret "${randomBytes(32).toString("base64")}";\n};\n`,
  );
  const soa = `$TTL 60\n@ SOA ns.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 5\n@ NS ns.${ZONE}.\n`;
  writeFileSync(join(dir, `${ZONE}.zone`), `${soa}ns A 127.0.0.1\n`);
  writeFileSync(join(dir, `${REV}.zone`), soa);
  mkdirSync(join(dir, "run"));
  writeFileSync(
    join(dir, "named.conf"),
    `options {
    directory "${dir}";
    pid-file "${dir}/run/named.pid";
    listen-on port ${port} { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
};
include "${keyFile}";
zone "${ZONE}" {
    type primary;
    file "${dir}/${ZONE}.zone";
    update-policy { grant ikontainer zonesub A AAAA TXT SRV PTR; };
    allow-transfer { key ikontainer; };
};
zone "${REV}" {
    type primary;
    file "${dir}/${REV}.zone";
    update-policy { grant ikontainer zonesub PTR; };
    allow-transfer { key ikontainer; };
};
`,
  );
  let log = "";
  named = spawn("named", ["-g", "-u", "root", "-c", join(dir, "named.conf")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  named.stderr!.on("data", (d: Buffer) => {
    log += d.toString();
  });
  // Up once it answers for the zone; while it starts, its log grows (a stall fails with the log in the message).
  await waitUntil(
    async () => {
      if (named.exitCode !== null) throw new Error(`named exited (${named.exitCode})`);
      const answered = await dig(ZONE, "SOA").then(
        (a) => a.length > 0,
        () => false,
      );
      return { done: answered, progress: log.length };
    },
    { what: "named answering for the zone" },
  ).catch((e: Error) => {
    throw new Error(`${e.message}; named's log:\n${log}`);
  });
  target = {
    server: { host: "127.0.0.1", port },
    key: readTsigFile(keyFile),
    zone: ZONE,
    reverseZone: REV,
    timeoutMs: 3000,
  };
});

afterAll(async () => {
  if (named && named.exitCode === null) {
    await new Promise<void>((r) => {
      named.once("exit", () => r());
      named.kill("SIGTERM");
      setTimeout(() => named.kill("SIGKILL"), 5000).unref();
    });
  }
  rmSync(dir, { recursive: true, force: true });
});

const identity = (ip: string, over: Partial<InstanceIdentity> = {}): InstanceIdentity => ({
  cuid: v7(),
  svcLabel: "web",
  namespace: "shop",
  zone: ZONE,
  ip,
  ports: [{ name: "http", port: 8080, proto: "tcp" }],
  started: new Date().toISOString(),
  ...over,
});

describe("the documented BIND 9 configuration", () => {
  it("accepts registration, guarded deregistration and gc from ikontainer with BIND's own key file", async () => {
    const state = join(dir, "state");
    const flags = [
      "--ddns-server",
      `127.0.0.1:${port}`,
      "--zone",
      ZONE,
      "--reverse-zone",
      REV,
      "--tsig-file",
      keyFile,
    ];
    const { stdout } = await run("node", [
      CLI,
      "ddns",
      "register",
      "--once",
      "--svc",
      "web",
      "--dns-namespace",
      "shop",
      "--state-dir",
      state,
      "--advertise-ip",
      "127.0.0.90",
      "--port",
      "http:8080/tcp",
      "--lease",
      "1s",
      ...flags,
    ]);
    const stale = stdout.trim();
    expect(await dig(stale, "A")).toEqual(["127.0.0.90"]);
    expect(await dig(`_http._tcp.web.shop.${ZONE}`, "SRV")).toEqual([`0 10 8080 ${stale}.`]);
    expect(await dig("90.0.0.127.in-addr.arpa", "PTR")).toEqual([`${stale}.`]);

    // IP reuse: a newer instance takes 127.0.0.91 from an older one; the older one's deregistration spares it.
    const old = identity("127.0.0.91");
    const newer = identity("127.0.0.91");
    await registerInstance(target, old, { ttl: 5000, leaseMs: 600_000 });
    await registerInstance(target, newer, { ttl: 5000, leaseMs: 600_000 });
    const result = await deregisterInstance(target, publishedOf(old));
    expect(result).toMatchObject({
      removed: true,
      reverseKeptFor: ["127.0.0.91"],
      addressKept: ["127.0.0.91"],
    });
    const newerName = `${newer.cuid}.web.shop.${ZONE}.`;
    expect(await dig("91.0.0.127.in-addr.arpa", "PTR")).toEqual([newerName]);
    expect(await dig(`web.shop.${ZONE}`, "A")).toEqual(expect.arrayContaining(["127.0.0.91"]));

    // gc through a signed AXFR from named: the expired instance goes, the live one stays.
    await leasePassed(leaseEnd((await dig(stale, "TXT"))[0]));
    const gc = await run("node", [CLI, "ddns", "gc", ...flags]);
    expect(gc.stdout).toContain(`removed ${stale}`);
    expect(gc.stdout).not.toContain(newer.cuid);
    expect(await dig(stale, "ANY")).toEqual([]);
    expect(await dig("90.0.0.127.in-addr.arpa", "PTR")).toEqual([]);
    expect(await dig(`web.shop.${ZONE}`, "A")).toEqual(["127.0.0.91"]);
    expect(await dig(`_http._tcp.web.shop.${ZONE}`, "SRV")).toEqual([`0 10 8080 ${newerName}`]);
  });

  it("a wrong secret: BIND answers NOTAUTH with BADSIG, and the error says so", async () => {
    const err = await registerInstance(
      { ...target, key: { ...target.key, secret: randomBytes(32) } as typeof target.key },
      identity("127.0.0.92"),
      { ttl: 5000, leaseMs: 60_000 },
    ).catch((e: unknown) => e as Error);
    expect((err as Error).message).toMatch(
      /registration in zone svc\.example\.org failed: .*NOTAUTH, TSIG error BADSIG/,
    );
  });
});
