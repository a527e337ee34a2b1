import { isUtf8 } from "node:buffer";
import type { Identity, LineBatch, LogLine, StreamInfo } from "../core/record.js";
import type { RequestIdExtractor } from "./request-id.js";

/**
 * Stamps lines with the CUID and svc.
 *
 * `append` (the paper's format): original bytes + `{"ikontainer_CUID":"…","svc":"…"}` + `\n`, byte-transparent.
 * Pieces of an over-long line get `"ikontainer_part":N` (1-based) and, on all but the last, `"ikontainer_partial":true`.
 *
 * `json`: one object per line. Agent-owned keys (AGENT_KEYS, IDENTITY_KEYS, `ikontainer_*` and every field the
 * agent sets) always carry the agent's value; when the line is itself a JSON object that already has one of
 * them, the application's value is kept under `app_<key>` (so a CUID tag or a pod/IP the application wrote
 * itself can never override the agent's).
 */

export const AGENT_KEYS = [
  "ikontainer_CUID",
  "svc",
  "@timestamp",
  "source",
  "stream",
  "request_id",
  "ikontainer_part",
  "ikontainer_partial",
  "ikontainer_invalid_utf8",
  "ikontainer_unterminated",
] as const;

/**
 * Who-wrote-it fields. They are the agent's whether or not the agent knows a value for them here: a line's own
 * `pod_ip` (etc.) is moved to `app_pod_ip`, so no application can make a record claim another instance's pod,
 * IP, container or restart. Fields the agent sets beyond these (e.g. `labels.*` in node mode) are the agent's too.
 */
export const IDENTITY_KEYS = [
  "pod",
  "namespace",
  "node",
  "pod_ip",
  "host_ip",
  "pod_uid",
  "container",
  "restart",
  "container_id",
] as const;

const RESERVED = new Set<string>([...AGENT_KEYS, ...IDENTITY_KEYS]);

/** Keys an application line may not set: the agent's, the identity fields, and anything `ikontainer_*`. */
function isReserved(
  key: string,
  streamFields: Readonly<Record<string, unknown>> | undefined,
  agentFields: Readonly<Record<string, unknown>> | undefined,
): boolean {
  return (
    RESERVED.has(key) ||
    key.startsWith("ikontainer_") ||
    (streamFields !== undefined && key in streamFields) ||
    (agentFields !== undefined && key in agentFields)
  );
}

export type StructuredRecord = Record<string, unknown> & {
  message: string;
  ikontainer_CUID: string;
  svc: string;
  "@timestamp": string;
  source: string;
};

export function tagJson(identity: Identity): string {
  return `{"ikontainer_CUID":${JSON.stringify(identity.cuid)},"svc":${JSON.stringify(identity.svc)}}`;
}

export function streamIdentity(stream: StreamInfo, fallback: Identity): Identity {
  return { cuid: stream.cuid ?? fallback.cuid, svc: stream.svc ?? fallback.svc };
}

/** Precomputed tag bytes per identity (the hot path appends the same bytes millions of times). */
export class AppendEncoder {
  private readonly cache = new Map<string, Buffer>();

  constructor(private readonly identity: Identity) {}

  private tagFor(id: Identity): Buffer {
    const k = `${id.cuid}\u0000${id.svc}`;
    let b = this.cache.get(k);
    if (!b) {
      b = Buffer.from(`${tagJson(id)}\n`);
      this.cache.set(k, b);
    }
    return b;
  }

  private pieceTag(id: Identity, line: LogLine): Buffer {
    // A line cut by a truncation (copytruncate) is partial without being a piece: no part number.
    const part = line.part === undefined ? "" : `,"ikontainer_part":${line.part}`;
    const extra = `${part}${line.partial ? ',"ikontainer_partial":true' : ""}`;
    return Buffer.from(`${tagJson(id).slice(0, -1)}${extra}}\n`);
  }

  encode(batch: LineBatch): Buffer {
    const id = streamIdentity(batch.stream, this.identity);
    const tag = this.tagFor(id);
    const parts: Buffer[] = new Array(batch.lines.length * 2);
    let n = 0;
    let size = 0;
    for (const line of batch.lines) {
      const t = line.part === undefined && !line.partial ? tag : this.pieceTag(id, line);
      parts[n++] = line.bytes;
      parts[n++] = t;
      size += line.bytes.length + t.length;
    }
    return Buffer.concat(parts, size);
  }
}

export interface StructuredOptions {
  identity: Identity;
  requestIds: RequestIdExtractor;
  /** Fields every record carries (pod, namespace, node, pod_ip from the Downward API); stream fields win. */
  fields?: Readonly<Record<string, string>>;
}

/** Downward-API environment variables → record fields (documented in the README). */
export function downwardFields(env: NodeJS.ProcessEnv): Record<string, string> {
  const map: Record<string, string | undefined> = {
    pod: env.POD_NAME,
    namespace: env.POD_NAMESPACE,
    node: env.NODE_NAME,
    pod_ip: env.POD_IP,
    host_ip: env.HOST_IP,
    pod_uid: env.POD_UID,
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(map)) if (v) out[k] = v;
  return out;
}

/** In node mode only the node's own facts describe every line (the rest comes from the container's log path). */
export function nodeLevelFields(env: NodeJS.ProcessEnv): Record<string, string> {
  const all = downwardFields(env);
  const out: Record<string, string> = {};
  if (all.node) out.node = all.node;
  if (all.host_ip) out.host_ip = all.host_ip;
  return out;
}

/** The line as a JSON object when it is one (leading blanks allowed), else undefined. */
export function parseObject(text: string): Record<string, unknown> | undefined {
  let i = 0;
  while (i < text.length && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  if (text.charCodeAt(i) !== 123 /* { */) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === "object" && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The structured form of one line, for `json` output and for fluentd / Elasticsearch. */
const readAtText = new WeakMap<LineBatch, string>();

/** Lines without a source time share their batch's read time: format it once per batch, not per line. */
function readAtIso(batch: LineBatch): string {
  let t = readAtText.get(batch);
  if (t === undefined) {
    t = new Date(batch.readAt).toISOString();
    readAtText.set(batch, t);
  }
  return t;
}

export function toStructured(line: LogLine, batch: LineBatch, opts: StructuredOptions): StructuredRecord {
  const id = streamIdentity(batch.stream, opts.identity);
  const validUtf8 = isUtf8(line.bytes);
  const text = line.bytes.toString("utf8"); // invalid sequences become U+FFFD
  const parsed = line.part === undefined ? parseObject(text) : undefined;
  const requestId = opts.requestIds.extract(text, parsed);

  const rec: Record<string, unknown> = {};
  if (parsed) {
    for (const [k, v] of Object.entries(parsed)) rec[k] = v;
    for (const k of Object.keys(parsed)) {
      if (isReserved(k, batch.stream.fields, opts.fields)) {
        rec[`app_${k}`] = parsed[k];
        delete rec[k];
      }
    }
    const own = parsed.message ?? parsed.msg;
    rec.message = typeof own === "string" ? own : text;
  } else {
    rec.message = text;
  }
  rec.ikontainer_CUID = id.cuid;
  rec.svc = id.svc;
  rec["@timestamp"] = line.time === undefined ? readAtIso(batch) : new Date(line.time).toISOString();
  rec.source = batch.stream.path;
  if (batch.stream.channel !== "file" || line.channel) rec.stream = line.channel ?? batch.stream.channel;
  if (requestId !== undefined) rec.request_id = requestId;
  if (line.part !== undefined) rec.ikontainer_part = line.part;
  if (line.partial) rec.ikontainer_partial = true;
  if (line.unterminated) rec.ikontainer_unterminated = true;
  if (!validUtf8) rec.ikontainer_invalid_utf8 = true;
  // The stream's identity (node mode: the container instance) first, then the agent's own (Downward API).
  if (batch.stream.fields) for (const [k, v] of Object.entries(batch.stream.fields)) rec[k] = v;
  if (opts.fields) for (const [k, v] of Object.entries(opts.fields)) rec[k] ??= v;
  return rec as StructuredRecord;
}

export function encodeJsonLines(batch: LineBatch, opts: StructuredOptions): Buffer {
  let out = "";
  for (const line of batch.lines) out += `${JSON.stringify(toStructured(line, batch, opts))}\n`;
  return Buffer.from(out);
}

/** Bytes for line-oriented sinks (file, stdout) in the chosen format. */
export type BatchEncoder = (batch: LineBatch) => Buffer;

export function createEncoder(format: "append" | "json", opts: StructuredOptions): BatchEncoder {
  if (format === "json") return (batch) => encodeJsonLines(batch, opts);
  const enc = new AppendEncoder(opts.identity);
  return (batch) => enc.encode(batch);
}
