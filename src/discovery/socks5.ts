import { isIP, type Socket } from "node:net";
import { errorMessage } from "../core/errors.js";
import { dnsMetrics } from "./metrics.js";
import { type RelayLogger, RelayServer } from "./relay.js";
import type { ServiceResolver } from "./resolve.js";

/** RFC 1928 reply codes. */
const REP = {
  SUCCEEDED: 0,
  GENERAL_FAILURE: 1,
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

/**
 * A SOCKS5 proxy (RFC 1928, CONNECT, no authentication) that resolves names itself, as curl's socks5h://
 * expects: names under the zone through SRV and the instance records, others through ordinary DNS. Every
 * connection resolves again (cached only for the records' TTL) and is logged with the chosen instance's CUID.
 */
export class Socks5Proxy extends RelayServer {
  constructor(
    private readonly resolver: ServiceResolver,
    log: RelayLogger,
    private readonly connectTimeoutMs = 3000,
  ) {
    super(log, "socks5");
  }

  protected async handle(client: Socket, id: number): Promise<void> {
    const r = new ByteReader(client);
    const [ver, nmethods] = await r.read(2);
    if (ver !== 5) throw new Error(`not a SOCKS5 client (version byte ${ver})`);
    const methods = await r.read(nmethods ?? 0);
    if (!methods.includes(0)) {
      client.end(Buffer.from([5, 0xff]));
      throw new Error("client offers no method we support (only 'no authentication')");
    }
    client.write(Buffer.from([5, 0]));
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
    let upstream: Awaited<ReturnType<ServiceResolver["connect"]>>;
    try {
      upstream = await this.resolver.connect(host, port, { connectTimeoutMs: this.connectTimeoutMs });
    } catch (e) {
      dnsMetrics.proxyConnections.inc({ mode: "socks5", result: "failed" });
      client.end(reply(repFor(e)));
      throw new Error(`cannot reach ${host}:${port}: ${errorMessage(e)}`);
    }
    const { socket, endpoint } = upstream;
    const local = socket.localAddress ?? "0.0.0.0";
    client.write(reply(REP.SUCCEEDED, local.replace(/^::ffff:/, ""), socket.localPort ?? 0));
    const head = r.detach();
    this.relay(client, socket, id, `${host}:${port}`, endpoint, head);
  }
}
