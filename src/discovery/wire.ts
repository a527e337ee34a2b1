import { createRequire } from "node:module";

/**
 * DNS wire format pieces that dns-packet does not cover: UPDATE messages (RFC 2136) need class NONE (254)
 * and empty-RDATA records (class ANY deletes, "RRset exists" prerequisites), so records are encoded here
 * from dns-packet's name and RDATA codecs. Names are never compressed (RFC 8945 wants them plain in the MAC).
 */

interface Codec<T> {
  encode(value: T, buf?: Buffer, offset?: number): Buffer;
  decode(buf: Buffer, offset?: number): T;
  encodingLength(value: T): number;
}
interface DnsPacketInternals {
  name: Codec<string> & { decode: Codec<string>["decode"] & { bytes: number } };
  record(type: string): Codec<unknown> & { decode: Codec<unknown>["decode"] & { bytes: number } };
}
// Loaded on first use: `run` reads the DNS settings (and this module) even when it publishes nothing.
let loaded: DnsPacketInternals | undefined;
const internals = {
  get name() {
    loaded ??= createRequire(import.meta.url)("dns-packet") as DnsPacketInternals;
    return loaded.name;
  },
  record(type: string) {
    loaded ??= createRequire(import.meta.url)("dns-packet") as DnsPacketInternals;
    return loaded.record(type);
  },
};

export const CLASS = { IN: 1, NONE: 254, ANY: 255 } as const;
export const TYPE = {
  A: 1,
  NS: 2,
  SOA: 6,
  PTR: 12,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  TSIG: 250,
  AXFR: 252,
  ANY: 255,
} as const;
export type RRType = "A" | "AAAA" | "PTR" | "TXT" | "SRV" | "SOA" | "NS" | "ANY";

export const OPCODE_UPDATE = 5;

export const RCODE_NAMES: Record<number, string> = {
  0: "NOERROR",
  1: "FORMERR",
  2: "SERVFAIL",
  3: "NXDOMAIN",
  4: "NOTIMP",
  5: "REFUSED",
  6: "YXDOMAIN",
  7: "YXRRSET",
  8: "NXRRSET",
  9: "NOTAUTH",
  10: "NOTZONE",
  16: "BADSIG",
  17: "BADKEY",
  18: "BADTIME",
  22: "BADTRUNC",
};
export const rcodeName = (n: number): string => RCODE_NAMES[n] ?? `RCODE${n}`;

/** A fully qualified name without the trailing dot, lowercased (DNS names compare case-insensitively). */
export function fqdn(name: string): string {
  return name.replace(/\.+$/, "").toLowerCase();
}

export function encodeName(name: string): Buffer {
  const n = fqdn(name);
  if (n === "") return Buffer.from([0]);
  for (const label of n.split(".")) {
    if (label.length === 0 || Buffer.byteLength(label) > 63) throw new Error(`invalid DNS name "${name}"`);
  }
  return internals.name.encode(n);
}

/** RDATA with its 2-byte length prefix (dns-packet's RDATA encoders write the prefix themselves). */
export function encodeRdata(type: RRType, data: unknown): Buffer {
  if (data === undefined) return Buffer.from([0, 0]);
  return internals.record(type).encode(data);
}

export interface WireRecord {
  name: string;
  type: RRType | number;
  klass: number;
  ttl: number;
  /** RDATA in dns-packet's shape (string for A/AAAA/PTR, {priority,weight,port,target} for SRV, string[] for TXT); undefined = empty. */
  data?: unknown;
}

export function typeNumber(t: RRType | number): number {
  return typeof t === "number" ? t : TYPE[t];
}

export function encodeRecord(r: WireRecord): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(typeNumber(r.type), 0);
  head.writeUInt16BE(r.klass, 2);
  head.writeUInt32BE(r.ttl >>> 0, 4);
  const rdata =
    r.data === undefined
      ? Buffer.from([0, 0])
      : encodeRdata(typeof r.type === "number" ? "ANY" : r.type, r.data);
  return Buffer.concat([encodeName(r.name), head, rdata]);
}

export interface MessageParts {
  id: number;
  flags: number;
  /** Questions (the zone section in an UPDATE). */
  questions: { name: string; type: number; klass: number }[];
  answers?: WireRecord[];
  authorities?: WireRecord[];
  additionals?: WireRecord[];
}

export function encodeMessage(m: MessageParts): Buffer {
  const answers = m.answers ?? [];
  const authorities = m.authorities ?? [];
  const additionals = m.additionals ?? [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(m.id, 0);
  header.writeUInt16BE(m.flags, 2);
  header.writeUInt16BE(m.questions.length, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authorities.length, 8);
  header.writeUInt16BE(additionals.length, 10);
  const parts: Buffer[] = [header];
  for (const q of m.questions) {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(q.type, 0);
    t.writeUInt16BE(q.klass, 2);
    parts.push(encodeName(q.name), t);
  }
  for (const r of [...answers, ...authorities, ...additionals]) parts.push(encodeRecord(r));
  return Buffer.concat(parts);
}

/** Reads a (possibly compressed) name; returns it and the offset after it in the message. */
export function readName(buf: Buffer, offset: number): { name: string; end: number } {
  const name = internals.name.decode(buf, offset);
  return { name: name === "." ? "" : fqdn(name), end: offset + internals.name.decode.bytes };
}

export interface RawRecord {
  name: string;
  type: number;
  klass: number;
  ttl: number;
  /** Offset of the record's first byte in the message. */
  start: number;
  rdataStart: number;
  rdataEnd: number;
}

/** Walks every section of a message and returns the records' positions (enough to find and strip TSIG). */
export function scanMessage(buf: Buffer): {
  id: number;
  flags: number;
  rcode: number;
  counts: [number, number, number, number];
  records: RawRecord[][];
} {
  if (buf.length < 12) throw new Error("DNS message shorter than its header");
  const counts: [number, number, number, number] = [
    buf.readUInt16BE(4),
    buf.readUInt16BE(6),
    buf.readUInt16BE(8),
    buf.readUInt16BE(10),
  ];
  let off = 12;
  for (let i = 0; i < counts[0]; i++) off = readName(buf, off).end + 4;
  const records: RawRecord[][] = [[], [], []];
  for (let s = 1; s < 4; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      const start = off;
      const { name, end } = readName(buf, off);
      if (end + 10 > buf.length) throw new Error("DNS message truncated inside a record");
      const rdlen = buf.readUInt16BE(end + 8);
      const rr: RawRecord = {
        name,
        type: buf.readUInt16BE(end),
        klass: buf.readUInt16BE(end + 2),
        ttl: buf.readUInt32BE(end + 4),
        start,
        rdataStart: end + 10,
        rdataEnd: end + 10 + rdlen,
      };
      if (rr.rdataEnd > buf.length) throw new Error("DNS message truncated inside RDATA");
      records[s - 1]!.push(rr);
      off = rr.rdataEnd;
    }
  }
  const flags = buf.readUInt16BE(2);
  return { id: buf.readUInt16BE(0), flags, rcode: flags & 0xf, counts, records };
}

/** Decodes one record's RDATA with dns-packet (names inside may be compressed, so it reads from the whole message). */
export function decodeRdata(buf: Buffer, rr: RawRecord): unknown {
  const typeName: Record<number, string> = {
    1: "A",
    2: "NS",
    6: "SOA",
    12: "PTR",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
  };
  const t = typeName[rr.type];
  if (!t) return buf.subarray(rr.rdataStart, rr.rdataEnd);
  const v = internals.record(t).decode(buf, rr.rdataStart - 2);
  if (t === "PTR" || t === "NS") return fqdn(v as string);
  if (t === "SRV") {
    const s = v as { priority: number; weight: number; port: number; target: string };
    return { ...s, target: fqdn(s.target) };
  }
  if (t === "TXT") return (v as Buffer[]).map((b) => b.toString("utf8"));
  return v;
}
