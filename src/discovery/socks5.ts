import { createHash, timingSafeEqual } from "node:crypto";
import { isIP, type Socket } from "node:net";
import { errorMessage } from "../core/errors.js";
import { dnsMetrics } from "./metrics.js";
import { type RelayLogger, RelayServer } from "./relay.js";
import { type Credentials, isLocalAddress, type RelayPolicy } from "./relay-policy.js";
import type { ServiceResolver } from "./resolve.js";

/** RFC 1928 reply codes. */
const REP = {
  SUCCEEDED: 0,
  GENERAL_FAILURE: 1,
  NOT_ALLOWED: 2,
  NETWORK_UNREACHABLE: 3,
  HOST_UNREACHABLE: 4,
  CONNECTION_REFUSED: 5,
  TTL_EXPIRED: 6,
  COMMAND_NOT_SUPPORTED: 7,
  ADDRESS_TYPE_NOT_SUPPORTED: 8,
} as const;

/** Reads exact byte counts from a socket that has not been piped yet. */
class ByteReader {
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  private ended = false;

  constructor(private readonly socket: Socket) {
    socket.on("data", this.onData);
    socket.once("end", this.onEnd);
    socket.once("close", this.onEnd);
  }

  private onData = (chunk: Buffer) => {
    this.buf = Buffer.concat([this.buf, chunk]);
    this.waiting?.();
  };

  private onEnd = () => {
    this.ended = true;
    this.waiting?.();
  };

  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error("client closed during the SOCKS5 handshake");
      if (Date.now() > deadline) throw new Error("SOCKS5 handshake timed out");
      await new Promise<void>((r) => {
        this.waiting = r;
        setTimeout(r, 250).unref();
      });
      this.waiting = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Stops reading and returns bytes that arrived after the handshake (optimistic clients send early). */
  detach(): Buffer {
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onEnd);
    this.socket.off("close", this.onEnd);
    return this.buf;
  }
}

function reply(rep: number, bindHost = "0.0.0.0", bindPort = 0): Buffer {
  const v6 = isIP(bindHost) === 6;
  // BND.ADDR is informational; an IPv6 bind address is reported as :: rather than re-encoded.
  const addr = v6 ? Buffer.alloc(16) : Buffer.from(bindHost.split(".").map(Number));
  const out = Buffer.alloc(4 + addr.length + 2);
  out[0] = 5;
  out[1] = rep;
  out[2] = 0;
  out[3] = v6 ? 4 : 1;
  addr.copy(out, 4);
  out.writeUInt16BE(bindPort, 4 + addr.length);
  return out;
}

function repFor(e: unknown): number {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ECONNREFUSED") return REP.CONNECTION_REFUSED;
  if (code === "ENETUNREACH") return REP.NETWORK_UNREACHABLE;
  if (code === "EHOSTUNREACH" || code === "ENOTFOUND" || code === "IKON_ERR_DNS_NOT_FOUND")
    return REP.HOST_UNREACHABLE;
  if (code === "ETIMEDOUT") return REP.TTL_EXPIRED;
  return REP.GENERAL_FAILURE;
}

const digest = (s: Buffer | string) => createHash("sha256").update(s).digest();

export interface Socks5Options {
  connectTimeoutMs?: number;
  /** Which destinations may be relayed to (names under the zone, `--allow`). */
  policy: RelayPolicy;
  /** When set, clients must authenticate with username/password (RFC 1929). */
  credentials?: Credentials | undefined;
}

/**
 * A SOCKS5 proxy (RFC 1928, CONNECT) that resolves names itself, as curl's socks5h:// expects: names under
 * the zone through SRV and the instance records; other destinations only when `--allow`ed (reply 2, "not
 * allowed by ruleset", otherwise), never itself. Optional username/password authentication (RFC 1929).
 * Every connection resolves again (cached only for the records' TTL) and is logged with the instance's CUID.
 */
export class Socks5Proxy extends RelayServer {
  private readonly connectTimeoutMs: number;

  constructor(
    private readonly resolver: ServiceResolver,
    log: RelayLogger,
    private readonly opts: Socks5Options,
  ) {
    super(log, "socks5");
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 3000;
  }

  /** RFC 1929 sub-negotiation; false (and the connection closed) when the credentials are wrong. */
  private async authenticate(r: ByteReader, client: Socket): Promise<string> {
    const [ver, ulen] = await r.read(2);
    if (ver !== 1) throw new Error(`bad username/password sub-negotiation version ${ver}`);
    const user = (await r.read(ulen ?? 0)).toString("utf8");
    const pass = await r.read((await r.read(1))[0] ?? 0);
    const expected = this.opts.credentials?.users.get(user);
    // compare digests in constant time (equal lengths), whatever the user name
    const ok = expected !== undefined && timingSafeEqual(digest(pass), digest(expected));
    if (!ok) {
      client.end(Buffer.from([1, 1]));
      throw new Error(`authentication failed for user ${JSON.stringify(user.slice(0, 64))}`);
    }
    client.write(Buffer.from([1, 0]));
    return user;
  }

  /** A destination that is this proxy itself (chaining through itself): the port we listen on, on this host. */
  private isSelf(host: string, port: number): boolean {
    const a = this.server.address();
    return typeof a === "object" && a !== null && a.port === port && isIP(host) !== 0 && isLocalAddress(host);
  }

  protected async handle(client: Socket, id: number): Promise<void> {
    const r = new ByteReader(client);
    const [ver, nmethods] = await r.read(2);
    if (ver !== 5) throw new Error(`not a SOCKS5 client (version byte ${ver})`);
    const methods = await r.read(nmethods ?? 0);
    const method = this.opts.credentials ? 2 : 0;
    if (!methods.includes(method)) {
      client.end(Buffer.from([5, 0xff]));
      throw new Error(
        `client offers no method we accept (${method === 2 ? "username/password required" : "only 'no authentication'"})`,
      );
    }
    client.write(Buffer.from([5, method]));
    if (method === 2) await this.authenticate(r, client);
    const [v2, cmd, , atyp] = await r.read(4);
    if (v2 !== 5) throw new Error("bad SOCKS5 request version");
    let host: string;
    if (atyp === 1) host = [...(await r.read(4))].join(".");
    else if (atyp === 3) host = (await r.read((await r.read(1))[0] ?? 0)).toString("utf8");
    else if (atyp === 4) {
      const b = await r.read(16);
      host = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(":");
    } else {
      client.end(reply(REP.ADDRESS_TYPE_NOT_SUPPORTED));
      throw new Error(`unsupported address type ${atyp}`);
    }
    const port = (await r.read(2)).readUInt16BE(0);
    if (cmd !== 1) {
      client.end(reply(REP.COMMAND_NOT_SUPPORTED));
      throw new Error(`unsupported SOCKS5 command ${cmd} (only CONNECT)`);
    }
    if (!this.opts.policy.allows(host, port) || this.isSelf(host, port)) {
      dnsMetrics.proxyConnections.inc({ mode: "socks5", result: "refused" });
      client.end(reply(REP.NOT_ALLOWED));
      throw new Error(
        this.isSelf(host, port)
          ? `refused ${host}:${port}: that is this proxy (no chaining through itself)`
          : `refused ${host}:${port}: not under the zone and not in --allow`,
      );
    }
    let upstream: Awaited<ReturnType<ServiceResolver["connect"]>>;
    try {
      upstream = await this.resolver.connect(host, port, { connectTimeoutMs: this.connectTimeoutMs });
    } catch (e) {
      dnsMetrics.proxyConnections.inc({ mode: "socks5", result: "failed" });
      client.end(reply(repFor(e)));
      throw new Error(`cannot reach ${host}:${port}: ${errorMessage(e)}`);
    }
    const { socket, endpoint } = upstream;
    // a name under the zone (or an allowed one) that leads back to this proxy: refuse the loop
    if (this.isSelf(socket.remoteAddress ?? "", socket.remotePort ?? 0)) {
      socket.destroy();
      dnsMetrics.proxyConnections.inc({ mode: "socks5", result: "refused" });
      client.end(reply(REP.NOT_ALLOWED));
      throw new Error(`refused ${host}:${port}: it leads to this proxy (no chaining through itself)`);
    }
    const local = socket.localAddress ?? "0.0.0.0";
    client.write(reply(REP.SUCCEEDED, local.replace(/^::ffff:/, ""), socket.localPort ?? 0));
    const head = r.detach();
    this.relay(client, socket, id, `${host}:${port}`, endpoint, head);
  }
}
