import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  advertisedIp,
  advertisedPorts,
  ddnsConfigFrom,
  dnsNamespace,
  queryServer,
} from "../../src/config/ddns.js";
import {
  instanceTxt,
  parseInstanceTxt,
  parsePortSpec,
  reverseName,
  svcLabelOf,
  toLabel,
} from "../../src/discovery/records.js";
import { createRegistrar } from "../../src/discovery/registrar.js";
import { parseTsigSpec } from "../../src/discovery/tsig.js";
import { deregisterInstance, publishedOf, registerInstance } from "../../src/discovery/update.js";
import { type KnotServer, startKnot } from "../fixtures/knot.js";

describe("record names and TXT", () => {
  it("reverse names for IPv4 and IPv6", () => {
    expect(reverseName("10.1.2.3")).toBe("3.2.1.10.in-addr.arpa");
    expect(reverseName("2001:db8::1")).toBe(
      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    );
    expect(reverseName("::1")).toBe(`1${".0".repeat(31)}.ip6.arpa`);
    expect(() => reverseName("nope")).toThrow(/not an IP address/);
  });

  it("labels, ports and the TXT round trip", () => {
    expect(svcLabelOf("Web_Front.shop.cluster.local")).toBe("web-front");
    expect(() => toLabel("___", "--svc")).toThrow(/no usable DNS label/);
    expect(parsePortSpec("http:8080/tcp")).toEqual({ name: "http", port: 8080, proto: "tcp" });
    expect(parsePortSpec("dns:53/UDP")).toEqual({ name: "dns", port: 53, proto: "udp" });
    expect(parsePortSpec("metrics:9090")).toEqual({ name: "metrics", port: 9090, proto: "tcp" });
    expect(() => parsePortSpec("http:99999/tcp")).toThrow(/NAME:PORT\/PROTO/);
    expect(() => parsePortSpec("http")).toThrow(/NAME:PORT\/PROTO/);
    const id = {
      cuid: "0194e0e0-0000-7000-8000-000000000001",
      svcLabel: "web",
      namespace: "shop",
      zone: "z.test",
      ip: "10.0.0.1",
      ports: [parsePortSpec("http:8080/tcp"), parsePortSpec("dns:53/udp")],
      pod: "web-1",
      node: "n1",
      started: "2026-01-01T00:00:00.000Z",
    };
    const txt = instanceTxt(id, new Date("2026-01-01T00:05:00.000Z"));
    expect(parseInstanceTxt(txt)).toEqual({
      cuid: id.cuid,
      svc: "web.shop",
      pod: "web-1",
      node: "n1",
      started: id.started,
      expires: "2026-01-01T00:05:00.000Z",
      ports: id.ports,
    });
    expect(parseInstanceTxt(["v=spf1 -all"])).toBeUndefined();
  });
});

describe("DNS settings", () => {
  const base = { dnsTtl: 5000, lease: 300_000, dnsTimeout: 3000 };
  it("needs zone and key with a server, checks lease and renewal, and is off without a server", () => {
    expect(ddnsConfigFrom(base)).toBeUndefined();
    expect(() => ddnsConfigFrom({ ...base, ddnsServer: "127.0.0.1" })).toThrow(/--ddns-server needs --zone/);
    expect(() => ddnsConfigFrom({ ...base, ddnsServer: "127.0.0.1", zone: "z.test" })).toThrow(/TSIG key/);
    const tsig = "k:hmac-sha256:c2VjcmV0c2VjcmV0";
    const cfg = ddnsConfigFrom({ ...base, ddnsServer: "127.0.0.1", zone: "Z.Test.", tsig });
    expect(cfg).toMatchObject({ server: { host: "127.0.0.1", port: 53 }, zone: "z.test", renewMs: 100_000 });
    expect(JSON.stringify(cfg)).not.toContain("c2VjcmV0c2VjcmV0");
    expect(() =>
      ddnsConfigFrom({ ...base, ddnsServer: "127.0.0.1", zone: "z", tsig, renewInterval: 300_000 }),
    ).toThrow(/--renew-interval: must be shorter than --lease/);
    expect(() =>
      ddnsConfigFrom({ ...base, ddnsServer: "127.0.0.1", zone: "z", tsig, tsigFile: "/x" }),
    ).toThrow(/either --tsig or --tsig-file/);
  });

  it("address, ports, namespace and query server from settings and the Downward API", () => {
    expect(advertisedIp({}, { POD_IP: "10.9.8.7" })).toBe("10.9.8.7");
    expect(advertisedIp({ advertiseIp: "192.0.2.1" }, { POD_IP: "10.9.8.7" })).toBe("192.0.2.1");
    expect(() => advertisedIp({ advertiseIp: "host.example" }, {})).toThrow(/not an IPv4 or IPv6 address/);
    expect(advertisedIp({}, {})).toMatch(/\d|:/);
    expect(() => advertisedPorts({ port: ["http:80/tcp", "http:81/tcp"] })).toThrow(/given twice/);
    // A Kubernetes service-link variable (IKONTAINER_PORT=tcp://…) is not one of ours.
    expect(advertisedPorts({ port: ["tcp://10.96.0.7:80"] })).toEqual([]);
    expect(dnsNamespace({}, { POD_NAMESPACE: "Shop" })).toBe("shop");
    expect(dnsNamespace({}, {})).toBe("default");
    expect(queryServer({ ddnsServer: "[::1]:5353" })).toEqual({ host: "::1", port: 5353 });
    expect(queryServer({ dnsServer: "127.0.0.9", ddnsServer: "127.0.0.1" })).toEqual({
      host: "127.0.0.9",
      port: 53,
    });
  });
});

describe("IPv6 instances against knotd", () => {
  let knot: KnotServer;
  beforeAll(async () => {
    knot = await startKnot({ reverseZone: "ip6.arpa" });
  });
  afterAll(async () => {
    await knot?.stop();
  });

  it("publishes AAAA and an ip6.arpa PTR, and removes them", async () => {
    const registrar = createRegistrar(
      {
        ddnsServer: `127.0.0.1:${knot.port}`,
        zone: knot.zone,
        reverseZone: "ip6.arpa",
        tsig: knot.tsig,
        dnsTtl: 5000,
        lease: 60_000,
        dnsTimeout: 3000,
        port: ["http:8080/tcp"],
      },
      {
        cuid: "0194E0E0-0000-7000-8000-0000000000AA",
        svc: "v6web.shop.cluster.local",
        logger: { info() {}, warn() {}, error() {}, debug() {} },
        env: { POD_IP: "2001:db8::42", POD_NAMESPACE: "shop", POD_NAME: "v6web-1", NODE_NAME: "n6" },
      },
    )!;
    const name = `0194e0e0-0000-7000-8000-0000000000aa.v6web.shop.${knot.zone}`;
    expect(registrar.name).toBe(name);
    await registrar.registerOnce();
    expect(await knot.dig(name, "AAAA")).toEqual(["2001:db8::42"]);
    expect(await knot.dig(`v6web.shop.${knot.zone}`, "AAAA")).toEqual(["2001:db8::42"]);
    expect(await knot.dig(reverseName("2001:db8::42"), "PTR")).toEqual([`${name}.`]);
    const stdout = execFileSync("kdig", [
      "@127.0.0.1",
      "-p",
      String(knot.port),
      "+short",
      "-x",
      "2001:db8::42",
    ]).toString();
    expect(stdout.trim()).toBe(`${name}.`);
    const target = {
      server: { host: "127.0.0.1", port: knot.port },
      key: parseTsigSpec(knot.tsig),
      zone: knot.zone,
      reverseZone: "ip6.arpa",
    };
    const id = {
      cuid: "0194e0e0-0000-7000-8000-0000000000aa",
      svcLabel: "v6web",
      namespace: "shop",
      zone: knot.zone,
      ip: "2001:db8::42",
      ports: [parsePortSpec("http:8080/tcp")],
      started: "",
    };
    expect((await deregisterInstance(target, publishedOf(id))).removed).toBe(true);
    expect(await knot.dig(`v6web.shop.${knot.zone}`, "AAAA")).toEqual([]);
    expect(await knot.dig(reverseName("2001:db8::42"), "PTR")).toEqual([]);
    // registerInstance with an IPv4 address and an ip6.arpa reverse zone: no PTR attempted, no error.
    await registerInstance(
      target,
      { ...id, cuid: "0194e0e0-0000-7000-8000-0000000000bb", ip: "127.0.0.5" },
      {
        ttl: 5000,
        leaseMs: 60_000,
      },
    );
    expect(await knot.dig(`v6web.shop.${knot.zone}`, "A")).toEqual(["127.0.0.5"]);
  });
});
