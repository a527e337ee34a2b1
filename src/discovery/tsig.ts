import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { CLASS, encodeName, fqdn, rcodeName, scanMessage, TYPE } from "./wire.js";

/**
 * TSIG (RFC 8945): HMAC signatures over whole DNS messages with a shared secret. We sign the exact bytes we
 * send and verify the server's signed replies (including every message of a zone transfer).
 */

export const TSIG_ALGORITHMS = {
  "hmac-md5": { wire: "hmac-md5.sig-alg.reg.int", hash: "md5" },
  "hmac-sha1": { wire: "hmac-sha1", hash: "sha1" },
  "hmac-sha224": { wire: "hmac-sha224", hash: "sha224" },
  "hmac-sha256": { wire: "hmac-sha256", hash: "sha256" },
  "hmac-sha384": { wire: "hmac-sha384", hash: "sha384" },
  "hmac-sha512": { wire: "hmac-sha512", hash: "sha512" },
} as const;
export type TsigAlgorithm = keyof typeof TSIG_ALGORITHMS;

export interface TsigKey {
  name: string;
  algorithm: TsigAlgorithm;
  /** Never logged: TsigKey's toJSON/inspect hide it. */
  secret: Buffer;
}

/** Keeps the secret out of logs, JSON and util.inspect. */
export function makeKey(name: string, algorithm: TsigAlgorithm, secret: Buffer): TsigKey {
  const key = { name: fqdn(name), algorithm } as TsigKey;
  Object.defineProperty(key, "secret", { value: secret, enumerable: false });
  Object.defineProperty(key, "toJSON", {
    value: () => ({ name: key.name, algorithm, secret: "[hidden]" }),
    enumerable: false,
  });
  return key;
}

function algorithmFrom(raw: string, setting: string): TsigAlgorithm {
  const a = fqdn(raw).replace(/\.sig-alg\.reg\.int$/, "");
  if (a in TSIG_ALGORITHMS) return a as TsigAlgorithm;
  throw ERR_INVALID_SETTING(
    `invalid ${setting}: unknown TSIG algorithm "${raw}" (use one of ${Object.keys(TSIG_ALGORITHMS).join(", ")})`,
  );
}

function secretFrom(b64: string, setting: string): Buffer {
  const clean = b64.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(clean) || clean.length % 4 !== 0)
    throw ERR_INVALID_SETTING(`invalid ${setting}: the TSIG secret is not valid base64`);
  return Buffer.from(clean, "base64");
}

/** `NAME:ALGORITHM:BASE64SECRET` (as `nsupdate -y ALG:NAME:SECRET`, but name first; ALG may be left out). */
export function parseTsigSpec(spec: string, setting = "--tsig"): TsigKey {
  const parts = spec.trim().split(":");
  if (parts.length === 2) return makeKey(parts[0]!, "hmac-sha256", secretFrom(parts[1]!, setting));
  if (parts.length !== 3 || !parts[0] || !parts[2])
    throw ERR_INVALID_SETTING(`invalid ${setting}: expected NAME:ALGORITHM:BASE64SECRET`);
  // Accept nsupdate's ALG:NAME:SECRET order too.
  const [a, b, secret] = parts as [string, string, string];
  const first = fqdn(a).replace(/\.sig-alg\.reg\.int$/, "");
  if (first in TSIG_ALGORITHMS && !(fqdn(b) in TSIG_ALGORITHMS))
    return makeKey(b, algorithmFrom(a, setting), secretFrom(secret, setting));
  return makeKey(a, algorithmFrom(b, setting), secretFrom(secret, setting));
}

/**
 * A key file: one `NAME:ALGORITHM:BASE64` line, a BIND `key "name" { algorithm …; secret "…"; };` block, or
 * Knot's `keymgr -t` output (`- id: name / algorithm: … / secret: …`).
 */
export function readTsigFile(path: string): TsigKey {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw ERR_INVALID_SETTING(`invalid --tsig-file: cannot read ${path}: ${(e as Error).message}`, e);
  }
  const setting = `--tsig-file ${path}`;
  const bind = /key\s+"?([^"\s{]+)"?\s*\{[^}]*?algorithm\s+"?([\w.-]+)"?\s*;[^}]*?secret\s+"([^"]+)"/s.exec(
    text,
  );
  if (bind) return makeKey(bind[1]!, algorithmFrom(bind[2]!, setting), secretFrom(bind[3]!, setting));
  const knot =
    /id:\s*"?([^\s"]+)"?\s*\n\s*algorithm:\s*"?([\w.-]+)"?\s*\n\s*secret:\s*"?([A-Za-z0-9+/=]+)"?/.exec(text);
  if (knot) return makeKey(knot[1]!, algorithmFrom(knot[2]!, setting), secretFrom(knot[3]!, setting));
  const line = text
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l !== "" && !l.startsWith("#"));
  if (!line) throw ERR_INVALID_SETTING(`invalid ${setting}: the file holds no key`);
  return parseTsigSpec(line, setting);
}

export interface TsigVariables {
  timeSigned: number;
  fudge: number;
  error: number;
  other: Buffer;
}

function u48(n: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt16BE(Math.floor(n / 2 ** 32), 0);
  b.writeUInt32BE(n % 2 ** 32, 2);
  return b;
}

function timers(v: TsigVariables): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v.fudge, 0);
  return Buffer.concat([u48(v.timeSigned), b]);
}

/** The "TSIG variables" of RFC 8945 4.3.3 (names lowercase and uncompressed). */
function variables(key: TsigKey, v: TsigVariables): Buffer {
  const mid = Buffer.alloc(6);
  mid.writeUInt16BE(CLASS.ANY, 0);
  mid.writeUInt32BE(0, 2);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(v.error, 0);
  tail.writeUInt16BE(v.other.length, 2);
  return Buffer.concat([
    encodeName(key.name),
    mid,
    encodeName(TSIG_ALGORITHMS[key.algorithm].wire),
    timers(v),
    tail,
    v.other,
  ]);
}

function hmac(key: TsigKey, parts: Buffer[]): Buffer {
  const h = createHmac(TSIG_ALGORITHMS[key.algorithm].hash, key.secret);
  for (const p of parts) h.update(p);
  return h.digest();
}

function tsigRecord(key: TsigKey, v: TsigVariables, mac: Buffer, originalId: number): Buffer {
  const rdata = Buffer.concat([
    encodeName(TSIG_ALGORITHMS[key.algorithm].wire),
    timers(v),
    Buffer.from([mac.length >> 8, mac.length & 0xff]),
    mac,
    Buffer.from([originalId >> 8, originalId & 0xff, v.error >> 8, v.error & 0xff]),
    Buffer.from([v.other.length >> 8, v.other.length & 0xff]),
    v.other,
  ]);
  const head = Buffer.alloc(10);
  head.writeUInt16BE(TYPE.TSIG, 0);
  head.writeUInt16BE(CLASS.ANY, 2);
  head.writeUInt32BE(0, 4);
  head.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(key.name), head, rdata]);
}

export interface SignedMessage {
  wire: Buffer;
  /** The request MAC: the reply's MAC covers it. */
  mac: Buffer;
  key: TsigKey;
}

/** Signs an unsigned message: appends the TSIG record and increments ARCOUNT. */
export function signMessage(
  message: Buffer,
  key: TsigKey,
  opts: { now?: number; fudge?: number } = {},
): SignedMessage {
  const v: TsigVariables = {
    timeSigned: Math.floor((opts.now ?? Date.now()) / 1000),
    fudge: opts.fudge ?? 300,
    error: 0,
    other: Buffer.alloc(0),
  };
  const mac = hmac(key, [message, variables(key, v)]);
  const out = Buffer.concat([message, tsigRecord(key, v, mac, message.readUInt16BE(0))]);
  out.writeUInt16BE(message.readUInt16BE(10) + 1, 10);
  return { wire: out, mac, key };
}

export interface ParsedTsig {
  keyName: string;
  algorithm: string;
  timeSigned: number;
  fudge: number;
  mac: Buffer;
  originalId: number;
  error: number;
  other: Buffer;
  /** The message as it was before the TSIG record was added (ARCOUNT and ID restored). */
  unsigned: Buffer;
}

/** Finds the TSIG record (it must be the last additional record) and splits it off. */
export function extractTsig(message: Buffer): ParsedTsig | undefined {
  const scan = scanMessage(message);
  const add = scan.records[2]!;
  const last = add[add.length - 1];
  if (!last || last.type !== TYPE.TSIG) return undefined;
  let off = last.rdataStart;
  const alg = readUncompressedName(message, off);
  off = alg.end;
  const timeSigned = message.readUInt16BE(off) * 2 ** 32 + message.readUInt32BE(off + 2);
  const fudge = message.readUInt16BE(off + 6);
  const macLen = message.readUInt16BE(off + 8);
  const mac = Buffer.from(message.subarray(off + 10, off + 10 + macLen));
  off += 10 + macLen;
  const originalId = message.readUInt16BE(off);
  const error = message.readUInt16BE(off + 2);
  const otherLen = message.readUInt16BE(off + 4);
  const other = Buffer.from(message.subarray(off + 6, off + 6 + otherLen));
  const unsigned = Buffer.from(message.subarray(0, last.start));
  unsigned.writeUInt16BE(scan.counts[3] - 1, 10);
  unsigned.writeUInt16BE(originalId, 0);
  return {
    keyName: last.name,
    algorithm: alg.name,
    timeSigned,
    fudge,
    mac,
    originalId,
    error,
    other,
    unsigned,
  };
}

function readUncompressedName(buf: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = [];
  for (;;) {
    const len = buf[off];
    if (len === undefined) throw new Error("TSIG algorithm name runs past the message");
    off++;
    if (len === 0) break;
    if (len >= 0xc0) throw new Error("compressed name inside TSIG RDATA");
    labels.push(buf.toString("latin1", off, off + len));
    off += len;
  }
  return { name: fqdn(labels.join(".")), end: off };
}

export class TsigVerifyError extends Error {
  constructor(
    message: string,
    /** RFC 8945 error name: BADSIG, BADKEY, BADTIME, or UNSIGNED / FORMERR for replies we cannot check. */
    readonly tsigError: string,
  ) {
    super(message);
  }
}

/**
 * Verifies a reply to a signed request (RFC 8945 5.3): MAC over request MAC + reply without TSIG + variables.
 * For the 2nd and later messages of a zone transfer pass `previousMac` and `timersOnly` (5.3.1).
 */
export function verifyReply(
  reply: Buffer,
  key: TsigKey,
  previousMac: Buffer,
  opts: { now?: number; timersOnly?: boolean } = {},
): ParsedTsig {
  const t = extractTsig(reply);
  if (!t) throw new TsigVerifyError("the server's reply is not signed", "UNSIGNED");
  if (t.error !== 0 && t.mac.length === 0)
    throw new TsigVerifyError(
      `the server rejected our signature: TSIG error ${rcodeName(t.error)}`,
      rcodeName(t.error),
    );
  if (t.keyName !== key.name)
    throw new TsigVerifyError(`the reply is signed with key "${t.keyName}", not "${key.name}"`, "BADKEY");
  if (t.algorithm !== fqdn(TSIG_ALGORITHMS[key.algorithm].wire))
    throw new TsigVerifyError(`the reply is signed with algorithm ${t.algorithm}`, "BADKEY");
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(previousMac.length, 0);
  const v: TsigVariables = { timeSigned: t.timeSigned, fudge: t.fudge, error: t.error, other: t.other };
  const expected = hmac(key, [
    prefix,
    previousMac,
    t.unsigned,
    opts.timersOnly ? timers(v) : variables(key, v),
  ]);
  if (expected.length !== t.mac.length || !timingSafeEqual(expected, t.mac))
    throw new TsigVerifyError(
      "the reply's TSIG MAC does not match (BADSIG): wrong key or altered reply",
      "BADSIG",
    );
  const now = Math.floor((opts.now ?? Date.now()) / 1000);
  if (Math.abs(now - t.timeSigned) > t.fudge)
    throw new TsigVerifyError(
      `the reply was signed ${now - t.timeSigned}s away from our clock (fudge ${t.fudge}s): BADTIME`,
      "BADTIME",
    );
  if (t.error !== 0)
    throw new TsigVerifyError(`the server reports TSIG error ${rcodeName(t.error)}`, rcodeName(t.error));
  return t;
}

/**
 * Verifies a zone-transfer stream: the first message against the request MAC, then each signed message against
 * the previous MAC with unsigned messages in between folded in (at most 99 unsigned in a row, RFC 8945 5.3.1).
 */
export class TsigStreamVerifier {
  private prevMac: Buffer;
  private pending: Buffer[] = [];
  private first = true;

  constructor(
    private readonly key: TsigKey,
    requestMac: Buffer,
  ) {
    this.prevMac = requestMac;
  }

  /** Call for every message in order. */
  next(message: Buffer, opts: { now?: number } = {}): void {
    const t = extractTsig(message);
    if (!t) {
      if (this.first)
        throw new TsigVerifyError("the first message of the transfer is not signed", "UNSIGNED");
      this.pending.push(message);
      if (this.pending.length > 99)
        throw new TsigVerifyError("more than 99 unsigned messages in a transfer", "UNSIGNED");
      return;
    }
    if (this.pending.length > 0) {
      // Fold the unsigned messages into a synthetic "reply" by verifying over their concatenation.
      const joined = Buffer.concat([...this.pending, message]);
      this.pending = [];
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(this.prevMac.length, 0);
      const v: TsigVariables = { timeSigned: t.timeSigned, fudge: t.fudge, error: t.error, other: t.other };
      const head = joined.subarray(0, joined.length - message.length);
      const expected = hmac(this.key, [prefix, this.prevMac, head, t.unsigned, timers(v)]);
      if (expected.length !== t.mac.length || !timingSafeEqual(expected, t.mac))
        throw new TsigVerifyError("a transfer message's TSIG MAC does not match (BADSIG)", "BADSIG");
      this.prevMac = t.mac;
      return;
    }
    const parsed = verifyReply(message, this.key, this.prevMac, { ...opts, timersOnly: !this.first });
    this.first = false;
    this.prevMac = parsed.mac;
  }

  /** True when the last message seen was signed (a transfer must end on a signed message). */
  get complete(): boolean {
    return !this.first && this.pending.length === 0;
  }
}
