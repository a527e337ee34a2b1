import { isUtf8 } from "node:buffer";
import * as crypto from "node:crypto";
import type { LineBatch, LogLine } from "../core/record.js";
import {
  AGENT_KEYS,
  parseObject,
  type StructuredOptions,
  streamIdentity,
  toStructured,
} from "../transforms/tag.js";
import { dailyIndex } from "./elasticsearch-schema.js";

/**
 * One line's Elasticsearch document as its bulk NDJSON (action line + source line), written straight as text.
 *
 * The source is exactly `JSON.stringify({...toStructured(line), ikontainer_offset})`, same keys in the same
 * order with the same values (test/elasticsearch/document.test.ts compares both over many kinds of line);
 * building the record object first and serializing it cost about half the agent's CPU per line. Lines that
 * are JSON objects themselves, and fields whose names could change the key order, take the object path.
 */

// crypto.hash (Node >= 20.12) is about twice as fast as createHash for one short input
const oneShotHash = (crypto as { hash?: (alg: string, data: Buffer, enc: "base64url") => string }).hash;

/** The `_id` of a line: CUID, stream, input identity, byte offset, piece, and a digest of the bytes. */
export function documentId(
  cuid: string,
  batch: Pick<LineBatch, "stream" | "inputId">,
  offset: number,
  part: number | undefined,
  bytes: Buffer,
  run = "",
): string {
  // The content digest keeps a new file that reuses an inode number from colliding with an old one.
  const head = `${cuid}\u0000${batch.stream.key}\u0000${batch.inputId}${run}\u0000${offset}\u0000${part ?? 0}\u0000`;
  if (oneShotHash) return oneShotHash("sha1", Buffer.concat([Buffer.from(head), bytes]), "base64url");
  return crypto.createHash("sha1").update(head).update(bytes).digest("base64url");
}

/** Keys toStructured sets itself (plus the offset): a field with one of these names takes the object path. */
const OWN_KEYS = new Set<string>(["message", ...AGENT_KEYS, "ikontainer_offset", "__proto__"]);
// integer-like keys come first in a JS object's key order, whatever the insertion order
const INDEX_LIKE = /^(?:0|[1-9]\d*)$/;

export interface EncodedDocument {
  id: string;
  index: string;
  /** Action line + source line, newline-terminated. */
  ndjson: string;
}

/** Encodes the lines of batches; holds per-batch facts (identity, fields) and a scratch buffer for the ids. */
export class DocumentEncoder {
  private scratch = Buffer.allocUnsafe(64 * 1024);
  private lastDay = "";
  private lastIndex = "";

  constructor(
    private readonly structured: StructuredOptions,
    private readonly prefix: string,
  ) {}

  /** `run`: appended to the input identity in ids (exec stdio, whose offsets restart with every child). */
  encode(batch: LineBatch, run: string): EncodedDocument[] {
    const opts = this.structured;
    const id = streamIdentity(batch.stream, opts.identity);
    const fieldsJson = fixedFieldsJson(batch.stream.fields, opts.fields);
    const afterMessage = `,"ikontainer_CUID":${JSON.stringify(id.cuid)},"svc":${JSON.stringify(id.svc)},"@timestamp":"`;
    const sourceJson = `,"source":${JSON.stringify(batch.stream.path)}`;
    const idHead = Buffer.from(`${id.cuid}\u0000${batch.stream.key}\u0000${batch.inputId}${run}\u0000`);
    const out: EncodedDocument[] = new Array(batch.lines.length);
    let readAt: string | undefined;
    let i = 0;
    for (const line of batch.lines) {
      const docId = this.id(id.cuid, batch, line, run, idHead);
      let ts: string;
      let source: string | undefined;
      const text = line.bytes.toString("utf8"); // invalid sequences become U+FFFD
      if (fieldsJson === undefined || (line.part === undefined && parseObject(text) !== undefined)) {
        const rec = toStructured(line, batch, opts) as Record<string, unknown>;
        rec.ikontainer_offset = line.offset;
        ts = rec["@timestamp"] as string;
        source = JSON.stringify(rec);
      } else {
        if (line.time === undefined) readAt ??= new Date(batch.readAt).toISOString();
        ts = line.time === undefined ? readAt! : new Date(line.time).toISOString();
        const requestId = opts.requestIds.extract(text, undefined);
        let s = `{"message":${JSON.stringify(text)}${afterMessage}${ts}"${sourceJson}`;
        if (batch.stream.channel !== "file" || line.channel)
          s += `,"stream":${JSON.stringify(line.channel ?? batch.stream.channel)}`;
        if (requestId !== undefined) s += `,"request_id":${JSON.stringify(requestId)}`;
        if (line.part !== undefined) s += `,"ikontainer_part":${JSON.stringify(line.part)}`;
        if (line.partial) s += `,"ikontainer_partial":true`;
        if (line.unterminated) s += `,"ikontainer_unterminated":true`;
        if (!isUtf8(line.bytes)) s += `,"ikontainer_invalid_utf8":true`;
        source = `${s}${fieldsJson},"ikontainer_offset":${JSON.stringify(line.offset)}}`;
      }
      const index = this.indexFor(ts);
      out[i++] = {
        id: docId,
        index,
        ndjson: `{"create":{"_index":"${index}","_id":"${docId}"}}\n${source}\n`,
      };
    }
    return out;
  }

  private indexFor(ts: string): string {
    const day = ts.slice(0, 10);
    if (day !== this.lastDay) {
      this.lastDay = day;
      this.lastIndex = dailyIndex(this.prefix, ts);
    }
    return this.lastIndex;
  }

  /** documentId() without the per-line allocations: the batch's head bytes, then offset, piece and line. */
  private id(cuid: string, batch: LineBatch, line: LogLine, run: string, idHead: Buffer): string {
    if (!oneShotHash) return documentId(cuid, batch, line.offset, line.part, line.bytes, run);
    const need = idHead.length + 48 + line.bytes.length;
    if (need > this.scratch.length)
      this.scratch = Buffer.allocUnsafe(Math.max(need, this.scratch.length * 2));
    const b = this.scratch;
    let n = idHead.copy(b, 0);
    n += b.write(`${line.offset}\u0000${line.part ?? 0}\u0000`, n, "latin1");
    n += line.bytes.copy(b, n);
    return oneShotHash("sha1", b.subarray(0, n), "base64url");
  }
}

/**
 * The JSON text (`,"k":v…`) of the fields toStructured adds after its own, in its order: the stream's, then
 * the agent's where the stream has none. Undefined when a name could land elsewhere in the object's key order
 * (an own key, an integer-like name): those batches take the object path.
 */
function fixedFieldsJson(
  streamFields: Readonly<Record<string, string | number>> | undefined,
  agentFields: Readonly<Record<string, string>> | undefined,
): string | undefined {
  let s = "";
  const seen = new Set<string>();
  for (const fields of [streamFields, agentFields]) {
    if (!fields) continue;
    for (const [k, v] of Object.entries(fields)) {
      if (OWN_KEYS.has(k) || INDEX_LIKE.test(k)) return undefined;
      if (seen.has(k)) continue; // the stream's value wins (toStructured: rec[k] ??= agent's)
      if (v === undefined || v === null) return undefined;
      seen.add(k);
      s += `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
    }
  }
  return s;
}
