import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import { promisify } from "node:util";
import { SocksClient } from "socks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uuidV7 as v7 } from "../../src/core/cuid.js";
import type { InstanceIdentity } from "../../src/discovery/records.js";
import { DnsRegistrar } from "../../src/discovery/registrar.js";
import { parseTsigSpec } from "../../src/discovery/tsig.js";
import { freePort, type KnotServer, startKnot } from "../fixtures/knot.js";
import { waitForCount, waitForText } from "../helpers/progress.js";

const run = promisify(execFile);
const CLI = new URL("../../dist/cli/main.js", import.meta.url).pathname;
const quiet = { info() {}, warn() {}, error() {}, debug() {} };

let knot: KnotServer;
const children: ChildProcess[] = [];
const servers: Server[] = [];

/** An HTTP server on a loopback address that answers with its own name (one per "site"). */
async function webServer(host: string, name: string): Promise<{ port: number; server: Server }> {
  const port = await freePort(host);
  const server = createServer((_req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(name);
  });
  await new Promise<void>((r) => server.listen(port, host, r));
  servers.push(server);
  return { port, server };
}

function registrar(ip: string, port: number, svcLabel = "web"): DnsRegistrar {
  const id: InstanceIdentity = {
    cuid: v7(),
    svcLabel,
    namespace: "shop",
    zone: knot.zone,
    ip,
    ports: [{ name: "http", port, proto: "tcp" }],
    pod: `${svcLabel}-${ip.split(".").at(-1)}`,
    node: "node-1",
    started: new Date().toISOString(),
  };
  return new DnsRegistrar({
    target: {
      server: { host: knot.host, port: knot.port },
      key: parseTsigSpec(knot.tsig),
      zone: knot.zone,
      reverseZone: knot.reverseZone,
    },
    identity: id,
    ttl: 1000,
    leaseMs: 60_000,
    renewMs: 20_000,
    logger: quiet,
  });
}

/** Starts a long-running CLI command and waits until its log says it listens. */
async function startCli(args: string[]): Promise<{ child: ChildProcess; logs: () => string }> {
  const child = spawn("node", [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let logs = "";
  child.stderr!.on("data", (d: Buffer) => {
    logs += d.toString();
  });
  await waitForText(
    () => logs,
    /listening/,
    () => child.exitCode !== null,
    { what: args[0] },
  );
  return { child, logs: () => logs };
}

/** One HTTP/1.0 request over a fresh SOCKS5 connection (the proxy resolves the name). */
async function viaSocks(proxyPort: number, host: string, port: number): Promise<string> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: "127.0.0.1", port: proxyPort, type: 5 },
    command: "connect",
    destination: { host, port },
    timeout: 5000,
  });
  return httpOver(socket, host);
}

function httpOver(socket: Socket, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = "";
    socket.on("data", (d: Buffer) => {
      data += d.toString();
    });
    socket.on("end", () => resolve(data.split("\r\n\r\n")[1] ?? ""));
    socket.on("error", reject);
    socket.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  });
}

async function curl(proxyPort: number, url: string): Promise<string> {
  const { stdout } = await run("curl", [
    "-sS",
    "--max-time",
    "5",
    "-x",
    `socks5h://127.0.0.1:${proxyPort}`,
    url,
  ]);
  return stdout;
}

const dnsFlags = () => ["--dns-server", `127.0.0.1:${knot.port}`, "--zone", knot.zone];

beforeAll(async () => {
  knot = await startKnot();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const s of servers) s.closeAllConnections?.();
  for (const s of servers) s.close();
  await knot?.stop();
});

describe("resolve, SOCKS5 proxy and ambassador against knotd", () => {
  it("resolve lists live instances with address, port, CUID, pod and started", async () => {
    const a = await webServer("127.0.0.2", "site-a");
    const r = registrar("127.0.0.2", a.port, "catalog");
    r.start();
    await r.whenRegistered();
    const { stdout } = await run("node", [
      CLI,
      "resolve",
      `catalog.shop.${knot.zone}`,
      "--json",
      ...dnsFlags(),
    ]);
    const rows = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      instance: r.name,
      address: "127.0.0.2",
      port: `http:${a.port}/tcp`,
      cuid: r.name.split(".")[0],
      pod: "catalog-2",
      node: "node-1",
    });
    expect(Date.parse(rows[0].started)).toBeGreaterThan(0);
    const srv = await run("node", [CLI, "resolve", `_http._tcp.catalog.shop.${knot.zone}`, ...dnsFlags()]);
    expect(srv.stdout).toMatch(/^ADDRESS\s+PORT\s+CUID\s+POD/);
    expect(srv.stdout).toContain(`127.0.0.2  ${a.port}`);
    // The ambassador on a plain service name: no SRV for the port asked, so the service's instance list.
    const ambPort = await freePort();
    const amb = await startCli([
      "ambassador",
      "--listen",
      `127.0.0.1:${ambPort}`,
      "--service",
      `catalog.shop.${knot.zone}`,
      "--target-port",
      "9",
      ...dnsFlags(),
    ]);
    const { connect } = await import("node:net");
    const s = connect({ host: "127.0.0.1", port: ambPort });
    await new Promise((res, rej) => s.once("connect", res).once("error", rej));
    expect(await httpOver(s, "catalog")).toBe("site-a");
    expect(amb.logs()).toContain('"via":"instances"');
    amb.child.kill("SIGTERM");
    await r.stop();
    const gone = await run("node", [CLI, "resolve", `catalog.shop.${knot.zone}`, ...dnsFlags()]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((gone as { code: number }).code).toBe(1);
    expect((gone as { stderr: string }).stderr).toMatch(/no live instances .*\[IKON_ERR_DNS_NOT_FOUND\]/);
  });

  it("SOCKS5 (curl socks5h:// and the socks package) reaches the instance by SRV, logs its CUID, and other names via ordinary DNS", async () => {
    const a = await webServer("127.0.0.2", "site-a");
    const local = await webServer("127.0.0.1", "plain-dns");
    const r = registrar("127.0.0.2", a.port, "web");
    r.start();
    await r.whenRegistered();
    const proxyPort = await freePort();
    // outside the zone only what --allow names (the proxy is not an open relay)
    const proxy = await startCli([
      "proxy",
      "--listen",
      `127.0.0.1:${proxyPort}`,
      "--allow",
      `localhost:${local.port}`,
      ...dnsFlags(),
    ]);
    // Port 80 → _http._tcp SRV → the instance's real port.
    expect(await curl(proxyPort, `http://web.shop.${knot.zone}/`)).toBe("site-a");
    expect(await viaSocks(proxyPort, `_http._tcp.web.shop.${knot.zone}`, 1)).toBe("site-a");
    expect(await viaSocks(proxyPort, `web.shop.${knot.zone}`, 80)).toBe("site-a");
    // Outside the zone, allowed: the system resolver (localhost from /etc/hosts).
    expect(await curl(proxyPort, `http://localhost:${local.port}/`)).toBe("plain-dns");
    const cuid = r.name.split(".")[0]!;
    const lines = proxy
      .logs()
      .split("\n")
      .filter((l) => l.includes('"socks5: connected'))
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.peer_CUID === cuid)).toHaveLength(3);
    expect(lines.find((l) => l.target === `localhost:${local.port}`)).toMatchObject({ via: "system" });
    // A name in the zone with no instance: SOCKS5 "host unreachable", curl exit 97.
    const miss = await run("curl", [
      "-sS",
      "-x",
      `socks5h://127.0.0.1:${proxyPort}`,
      `http://nothing.shop.${knot.zone}/`,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((miss as { code: number }).code).toBe(97);
    expect((miss as { stderr: string }).stderr).toMatch(
      /SOCKS5 connection to nothing\.shop\.ikontainer\.test\. \(4\)/,
    ); // REP 4: host unreachable
    await r.stop();
    proxy.child.kill("SIGTERM");
  });

  it("the proxy and the ambassador follow a moving service: every request succeeds, open connections drain", async () => {
    const a = await webServer("127.0.0.2", "site-a");
    const b = await webServer("127.0.0.3", "site-b");
    const ra = registrar("127.0.0.2", a.port, "mover");
    ra.start();
    await ra.whenRegistered();
    const proxyPort = await freePort();
    const ambPort = await freePort();
    await startCli(["proxy", "--listen", `127.0.0.1:${proxyPort}`, ...dnsFlags()]);
    const amb = await startCli([
      "ambassador",
      "--listen",
      `127.0.0.1:${ambPort}`,
      "--service",
      `_http._tcp.mover.shop.${knot.zone}`,
      ...dnsFlags(),
    ]);
    const viaAmbassador = async (): Promise<string> => {
      const { connect } = await import("node:net");
      const s = connect({ host: "127.0.0.1", port: ambPort });
      await new Promise((r, j) => s.once("connect", r).once("error", j));
      return httpOver(s, "mover");
    };
    expect(await viaSocks(proxyPort, `mover.shop.${knot.zone}`, 80)).toBe("site-a");
    expect(await viaAmbassador()).toBe("site-a");

    // An open connection to site-a through the proxy, mid-request, while the service moves.
    const { socket: open } = await SocksClient.createConnection({
      proxy: { host: "127.0.0.1", port: proxyPort, type: 5 },
      command: "connect",
      destination: { host: `mover.shop.${knot.zone}`, port: 80 },
    });
    open.write("GET / HTTP/1.0\r\nHost: mover\r\n");

    const seen: string[] = [];
    const failures: string[] = [];
    let moving = true;
    const client = (async () => {
      while (moving) {
        for (const f of [() => viaSocks(proxyPort, `mover.shop.${knot.zone}`, 80), viaAmbassador]) {
          try {
            seen.push(await f());
          } catch (e) {
            failures.push((e as Error).message);
          }
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const done = () => seen.length + failures.length;
    await waitForCount(done, 4, { what: "requests before the move" });
    // The move: start the new instance at site-b, stop the old one (deregister, then its server goes away).
    const rb = registrar("127.0.0.3", b.port, "mover");
    rb.start();
    await rb.whenRegistered();
    await ra.stop();
    // As docs/dns.md tells an application to stop (preStop: TTL + 1 s): a proxy may still hold the old answer
    // for one TTL, and Node's server.close() resets a connection accepted but not yet sent a request, which no
    // proxy can retry. So the old server stops accepting only once the TTL has passed.
    await new Promise((r) => setTimeout(r, 2000));
    a.server.close(); // no new connections; open ones drain
    // Counted in requests, not time: the client pauses 25 ms per round of two, so 160 requests span at least
    // 2 s, twice the records' TTL; by then both paths answer from site-b, and they stay there.
    const moved = done();
    await waitForCount(done, moved + 160, { what: "requests after the move" });
    const after = seen.length;
    await waitForCount(done, after + 10, { what: "requests after the TTL" });
    moving = false;
    await client;

    expect(failures).toEqual([]);
    expect(seen.length - after).toBeGreaterThanOrEqual(10);
    expect(new Set(seen.slice(after))).toEqual(new Set(["site-b"]));
    expect(seen).toContain("site-a");
    // The connection opened before the move still completes on site-a.
    const drained = await new Promise<string>((resolve) => {
      let d = "";
      open.on("data", (x: Buffer) => {
        d += x.toString();
      });
      open.on("end", () => resolve(d.split("\r\n\r\n")[1] ?? ""));
      open.write("\r\n");
    });
    expect(drained).toBe("site-a");
    expect(amb.logs()).toContain(`"peer_CUID":"${rb.name.split(".")[0]}"`);
    await rb.stop();
  });
});
