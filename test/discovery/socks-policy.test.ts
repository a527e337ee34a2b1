import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { SocksClient } from "socks";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { freePort } from "../fixtures/knot.js";
import { CLI, removeDir, tempDir } from "../helpers/agent.js";
import { waitForText } from "../helpers/progress.js";

/**
 * The SOCKS5 proxy is not an open relay: outside the zone it relays only to `--allow`ed destinations
 * (reply 2, "not allowed by ruleset", otherwise), never to itself, and it can require username/password
 * (RFC 1929), which it insists on when listening beyond loopback. Real proxy processes, real sockets, the
 * `socks` client. (Names under the zone are covered against knotd in proxy.test.ts.)
 */

vi.setConfig({ testTimeout: 60_000 });

let dir: string;
let secret: Server; // stands for a loopback-only service such as redis on 127.0.0.1:6379
let secretPort: number;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = tempDir("ikon-socks-policy-");
  secret = createServer((s) => s.end("SECRET-SERVICE\n"));
  await new Promise<void>((r) => secret.listen(0, "127.0.0.1", r));
  secretPort = (secret.address() as { port: number }).port;
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  secret.close();
  removeDir(dir);
});

// a zone and a DNS server that is never asked: only destinations outside the zone are used here
const dnsFlags = ["--zone", "svc.example.test", "--dns-server", "127.0.0.1:9"];

async function startProxy(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [CLI, "proxy", "--listen", `127.0.0.1:${port}`, ...dnsFlags, ...args],
    {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...env },
    },
  );
  children.push(child);
  let logs = "";
  child.stderr!.on("data", (d: Buffer) => {
    logs += d.toString();
  });
  await waitForText(
    () => logs,
    /listening/,
    () => child.exitCode !== null,
    { what: "proxy" },
  );
  return { port, child };
}

/** CONNECT through the proxy and read what the destination says; rejects with the socks client's error. */
async function via(
  proxyPort: number,
  host: string,
  port: number,
  auth: { userId?: string; password?: string } = {},
): Promise<string> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: "127.0.0.1", port: proxyPort, type: 5, ...auth },
    command: "connect",
    destination: { host, port },
    timeout: 5000,
  });
  return new Promise((resolve, reject) => {
    let data = "";
    socket.on("data", (d: Buffer) => {
      data += d.toString();
    });
    socket.on("end", () => resolve(data.trim()));
    socket.on("error", reject);
  });
}

const stop = (c: ChildProcess) => c.kill("SIGTERM");

describe("SOCKS5 relay policy", () => {
  it("by default refuses loopback services and names outside the zone with reply 2 (not allowed)", async () => {
    const p = await startProxy([]);
    await expect(via(p.port, "127.0.0.1", secretPort)).rejects.toThrow(/NotAllowed/);
    await expect(via(p.port, "localhost", secretPort)).rejects.toThrow(/NotAllowed/);
    stop(p.child);
  });

  it("--allow HOST:PORT and CIDR open exactly those destinations", async () => {
    const p = await startProxy(["--allow", `localhost:${secretPort}`, "--allow", "127.0.0.0/8"]);
    expect(await via(p.port, "localhost", secretPort)).toBe("SECRET-SERVICE");
    expect(await via(p.port, "127.0.0.1", secretPort)).toBe("SECRET-SERVICE");
    // the name is allowed at that port only; CIDRs match IP destinations, not names
    await expect(via(p.port, "localhost", secretPort + 1)).rejects.toThrow(/NotAllowed/);
    stop(p.child);
  });

  it("refuses to chain through itself even when its address is allowed", async () => {
    const p = await startProxy(["--allow", "127.0.0.0/8"]);
    await expect(via(p.port, "127.0.0.1", p.port)).rejects.toThrow(/NotAllowed/);
    stop(p.child);
  });
});

describe("SOCKS5 username/password (RFC 1929)", () => {
  it("--auth-file: only the right user and password get through", async () => {
    const file = join(dir, "proxy-users");
    writeFileSync(file, "# users\nalice:correct horse\n", { mode: 0o600 });
    const p = await startProxy(["--auth-file", file, "--allow", `127.0.0.1:${secretPort}`]);
    expect(await via(p.port, "127.0.0.1", secretPort, { userId: "alice", password: "correct horse" })).toBe(
      "SECRET-SERVICE",
    );
    await expect(
      via(p.port, "127.0.0.1", secretPort, { userId: "alice", password: "wrong" }),
    ).rejects.toThrow(/Authentication failed/);
    await expect(via(p.port, "127.0.0.1", secretPort)).rejects.toThrow(/no accepted authentication type/);
    stop(p.child);
  });

  it("IKONTAINER_PROXY_AUTH from the environment", async () => {
    const p = await startProxy(["--allow", `127.0.0.1:${secretPort}`], {
      IKONTAINER_PROXY_AUTH: "bob:s3cret",
    });
    expect(await via(p.port, "127.0.0.1", secretPort, { userId: "bob", password: "s3cret" })).toBe(
      "SECRET-SERVICE",
    );
    await expect(via(p.port, "127.0.0.1", secretPort, { userId: "bob", password: "nope" })).rejects.toThrow(
      /Authentication failed/,
    );
    stop(p.child);
  });

  it("listening beyond loopback without credentials is refused at start", async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [CLI, "proxy", "--listen", `0.0.0.0:${port}`, ...dnsFlags], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    let err = "";
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((r) => child.once("close", (c) => r(c)));
    expect(code).toBe(2);
    expect(err).toContain("IKON_ERR_INVALID_SETTING");
    expect(err).toContain("--auth-file");
  });
});
