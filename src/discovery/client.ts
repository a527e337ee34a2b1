import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { connect, isIP } from "node:net";
import { type ERR_DNS, ERR_DNS_REJECTED, ERR_DNS_UNREACHABLE, type IkontainerError } from "../core/errors.js";
import {
  extractTsig,
  type SignedMessage,
  signMessage,
  type TsigKey,
  TsigStreamVerifier,
  TsigVerifyError,
  verifyReply,
} from "./tsig.js";
import {
  CLASS,
  decodeRdata,
  encodeMessage,
  fqdn,
  OPCODE_UPDATE,
  type RRType,
  rcodeName,
  scanMessage,
  TYPE,
  typeNumber,
  type WireRecord,
} from "./wire.js";

/** Where DNS messages go: an authoritative server for updates, or any server for queries. */
export interface DnsServer {
  host: string;
  port: number;
}

export const serverLabel = (s: DnsServer): string =>
  isIP(s.host) === 6 ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;

/** What a failed update carries besides its message, for callers and tests that match on it. */
export interface DnsFailure {
  rcode?: string;
  tsigError?: string;
  zone?: string;
  server: string;
  /** True when the server answered (a retry will not help until the server's config or ours changes). */
  answered: boolean;
  /** False when the request certainly never reached the server (no connection); an update may have landed otherwise. */
  sent?: boolean;
}

export type DnsError = IkontainerError & { dns: DnsFailure };

function dnsError(make: typeof ERR_DNS, message: string, dns: DnsFailure, cause?: unknown): DnsError {
  const e = make(message, cause) as DnsError;
  e.dns = dns;
  return e;
}

export function isDnsError(e: unknown): e is DnsError {
  return typeof e === "object" && e !== null && "dns" in e;
}

/** One TCP exchange; `onMessage` returns true when it has read the last message it wants. */
export function tcpExchange(
  server: DnsServer,
  request: Buffer,
  timeoutMs: number,
  onMessage: (msg: Buffer) => boolean,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    let done = false;
    let sent = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(
      () =>
        finish(
          dnsError(
            ERR_DNS_UNREACHABLE,
            `no answer from DNS server ${serverLabel(server)} within ${timeoutMs} ms`,
            { server: serverLabel(server), answered: false, sent },
          ),
        ),
      timeoutMs,
    );
    sock.on("connect", () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(request.length, 0);
      sock.write(Buffer.concat([len, request]));
      sent = true;
    });
    sock.on("data", (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) break;
        const msg = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        try {
          if (onMessage(msg)) return finish();
        } catch (e) {
          return finish(e as Error);
        }
      }
    });
    sock.on("error", (e) =>
      finish(
        dnsError(
          ERR_DNS_UNREACHABLE,
          `cannot reach DNS server ${serverLabel(server)}: ${(e as NodeJS.ErrnoException).code ?? e.message}`,
          { server: serverLabel(server), answered: false, sent },
          e,
        ),
      ),
    );
    sock.on("close", () =>
      finish(
        dnsError(
          ERR_DNS_UNREACHABLE,
          `DNS server ${serverLabel(server)} closed the connection before answering`,
          { server: serverLabel(server), answered: false, sent },
        ),
      ),
    );
  });
}

function udpExchange(server: DnsServer, request: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(server.host) === 6 ? "udp6" : "udp4");
    const id = request.readUInt16BE(0);
    const timer = setTimeout(() => {
      sock.close();
      reject(
        dnsError(
          ERR_DNS_UNREACHABLE,
          `no answer from DNS server ${serverLabel(server)} within ${timeoutMs} ms`,
          {
            server: serverLabel(server),
            answered: false,
          },
        ),
      );
    }, timeoutMs);
    sock.on("message", (msg) => {
      if (msg.length < 12 || msg.readUInt16BE(0) !== id) return;
      clearTimeout(timer);
      sock.close();
      resolve(msg);
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      sock.close();
      reject(
        dnsError(ERR_DNS_UNREACHABLE, `cannot reach DNS server ${serverLabel(server)}: ${e.message}`, {
          server: serverLabel(server),
          answered: false,
        }),
      );
    });
    sock.send(request, server.port, server.host);
  });
}

export interface Answer {
  name: string;
  type: number;
  ttl: number;
  data: unknown;
}

export interface QueryResult {
  rcode: string;
  answers: Answer[];
}

/** A plain (recursive-desired) query: UDP first, TCP when truncated or asked for. */
export async function query(
  server: DnsServer,
  name: string,
  type: RRType,
  opts: { timeoutMs?: number; tcp?: boolean; retries?: number } = {},
): Promise<QueryResult> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const req = encodeMessage({
    id: randomInt(0, 65536),
    flags: 1 << 8,
    questions: [{ name, type: typeNumber(type), klass: CLASS.IN }],
  });
  let reply: Buffer | undefined;
  if (!opts.tcp) {
    const tries = (opts.retries ?? 1) + 1;
    for (let i = 0; i < tries; i++) {
      try {
        reply = await udpExchange(server, req, Math.ceil(timeoutMs / tries));
        break;
      } catch (e) {
        if (i === tries - 1) throw e;
      }
    }
  }
  if (!reply || reply.readUInt16BE(2) & (1 << 9)) {
    let got: Buffer | undefined;
    await tcpExchange(server, req, timeoutMs, (m) => {
      got = Buffer.from(m);
      return true;
    });
    reply = got!;
  }
  return parseAnswers(reply);
}

export function parseAnswers(reply: Buffer): QueryResult {
  const scan = scanMessage(reply);
  const answers = scan.records[0]!.map((rr) => ({
    name: rr.name,
    type: rr.type,
    ttl: rr.ttl,
    data: decodeRdata(reply, rr),
  }));
  return { rcode: rcodeName(scan.rcode), answers };
}

/** An RFC 2136 prerequisite (section 2.4). */
export type Prerequisite =
  | { kind: "rrsetExists"; name: string; type: RRType }
  | { kind: "rrsetEquals"; name: string; records: { type: RRType; data: unknown }[] }
  | { kind: "rrsetAbsent"; name: string; type: RRType }
  | { kind: "nameInUse"; name: string }
  | { kind: "nameAbsent"; name: string };

/** An RFC 2136 update (section 2.5). */
export type UpdateOp =
  | { kind: "add"; name: string; type: RRType; ttl: number; data: unknown }
  | { kind: "deleteRRset"; name: string; type: RRType }
  | { kind: "deleteName"; name: string }
  | { kind: "deleteRR"; name: string; type: RRType; data: unknown };

function prereqRecords(p: Prerequisite): WireRecord[] {
  switch (p.kind) {
    case "rrsetExists":
      return [{ name: p.name, type: p.type, klass: CLASS.ANY, ttl: 0 }];
    case "rrsetEquals":
      return p.records.map((r) => ({ name: p.name, type: r.type, klass: CLASS.IN, ttl: 0, data: r.data }));
    case "rrsetAbsent":
      return [{ name: p.name, type: p.type, klass: CLASS.NONE, ttl: 0 }];
    case "nameInUse":
      return [{ name: p.name, type: "ANY", klass: CLASS.ANY, ttl: 0 }];
    case "nameAbsent":
      return [{ name: p.name, type: "ANY", klass: CLASS.NONE, ttl: 0 }];
  }
}

function updateRecord(u: UpdateOp): WireRecord {
  switch (u.kind) {
    case "add":
      return { name: u.name, type: u.type, klass: CLASS.IN, ttl: u.ttl, data: u.data };
    case "deleteRRset":
      return { name: u.name, type: u.type, klass: CLASS.ANY, ttl: 0 };
    case "deleteName":
      return { name: u.name, type: "ANY", klass: CLASS.ANY, ttl: 0 };
    case "deleteRR":
      return { name: u.name, type: u.type, klass: CLASS.NONE, ttl: 0, data: u.data };
  }
}

/** Encodes an UPDATE message (unsigned). */
export function encodeUpdate(
  zone: string,
  prereqs: Prerequisite[],
  updates: UpdateOp[],
  id = randomInt(0, 65536),
): Buffer {
  return encodeMessage({
    id,
    flags: OPCODE_UPDATE << 11,
    questions: [{ name: zone, type: TYPE.SOA, klass: CLASS.IN }],
    answers: prereqs.flatMap(prereqRecords),
    authorities: updates.map(updateRecord),
  });
}

/** Checks a reply to a signed request; throws a DnsError naming zone, server, RCODE and TSIG error. */
export function checkSignedReply(
  reply: Buffer,
  signed: SignedMessage,
  ctx: { zone: string; server: DnsServer; what: string },
): void {
  const scan = scanMessage(reply);
  const rcode = rcodeName(scan.rcode);
  const server = serverLabel(ctx.server);
  const fail = (tsigError?: string, detail?: string): never => {
    const tsigPart = tsigError ? `, TSIG error ${tsigError}` : "";
    const hint =
      tsigError === "BADSIG" || tsigError === "BADKEY"
        ? ` (check the TSIG key "${signed.key.name}" and its secret: they must match the server's)`
        : tsigError === "BADTIME"
          ? " (the clocks of this host and the DNS server differ by more than the fudge)"
          : rcode === "REFUSED" || rcode === "NOTAUTH"
            ? ` (the server does not let key "${signed.key.name}" update zone ${ctx.zone})`
            : rcode === "NOTZONE"
              ? ` (a name is outside zone ${ctx.zone})`
              : "";
    throw dnsError(
      ERR_DNS_REJECTED,
      `${ctx.what} in zone ${ctx.zone} failed: server ${server} answered ${rcode}${tsigPart}${detail ? `: ${detail}` : ""}${hint}`,
      { rcode, ...(tsigError ? { tsigError } : {}), zone: ctx.zone, server, answered: true },
    );
  };
  const tsig = extractTsig(reply);
  if (tsig && tsig.mac.length > 0) {
    try {
      verifyReply(reply, signed.key, signed.mac);
    } catch (e) {
      if (e instanceof TsigVerifyError) fail(e.tsigError, e.message);
      throw e;
    }
  } else if (scan.rcode === 0) {
    fail("UNSIGNED", "the server's reply is not signed, so it cannot be trusted");
  } else if (tsig) {
    fail(rcodeName(tsig.error) === "NOERROR" ? undefined : rcodeName(tsig.error));
  }
  if (scan.rcode !== 0) fail();
}

/** Sends a TSIG-signed UPDATE over TCP and verifies the server's signed reply. */
export async function sendUpdate(
  server: DnsServer,
  key: TsigKey,
  zone: string,
  prereqs: Prerequisite[],
  updates: UpdateOp[],
  opts: { timeoutMs?: number; what?: string } = {},
): Promise<void> {
  const signed = signMessage(encodeUpdate(zone, prereqs, updates), key);
  let reply: Buffer | undefined;
  await tcpExchange(server, signed.wire, opts.timeoutMs ?? 5000, (m) => {
    if (m.readUInt16BE(0) !== signed.wire.readUInt16BE(0)) return false;
    reply = Buffer.from(m);
    return true;
  });
  checkSignedReply(reply!, signed, { zone: fqdn(zone), server, what: opts.what ?? "update" });
}

/** A signed zone transfer (AXFR) with every message verified; returns the zone's records. */
export async function transferZone(
  server: DnsServer,
  key: TsigKey,
  zone: string,
  opts: { timeoutMs?: number } = {},
): Promise<Answer[]> {
  const req = encodeMessage({
    id: randomInt(0, 65536),
    flags: 0,
    questions: [{ name: zone, type: TYPE.AXFR, klass: CLASS.IN }],
  });
  const signed = signMessage(req, key);
  const verifier = new TsigStreamVerifier(key, signed.mac);
  const records: Answer[] = [];
  let soaSeen = 0;
  await tcpExchange(server, signed.wire, opts.timeoutMs ?? 10_000, (m) => {
    const msg = Buffer.from(m);
    const scan = scanMessage(msg);
    if (scan.rcode !== 0 || records.length === 0)
      checkSignedReply(msg, signed, { zone: fqdn(zone), server, what: "zone transfer" });
    verifier.next(msg);
    for (const rr of scan.records[0]!) {
      if (rr.type === TYPE.SOA) soaSeen++;
      records.push({ name: rr.name, type: rr.type, ttl: rr.ttl, data: decodeRdata(msg, rr) });
    }
    return soaSeen >= 2;
  });
  if (!verifier.complete)
    throw dnsError(
      ERR_DNS_REJECTED,
      `zone transfer of ${zone} from ${serverLabel(server)} ended on an unsigned message`,
      {
        server: serverLabel(server),
        zone,
        answered: true,
        tsigError: "UNSIGNED",
      },
    );
  return records.slice(0, -1);
}
