import * as crypto from "node:crypto";
import { closeSync, fdatasyncSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { Client, errors as esErrors, Serializer } from "@elastic/elasticsearch";
import {
  clientOptions,
  describeEsError,
  type EsConnection,
  esConnection,
  redactUrl,
} from "../config/elasticsearch.js";
import { ERR_INVALID_SETTING, ERR_SINK, errorMessage } from "../core/errors.js";
import type { LineBatch } from "../core/record.js";
import { mkdirWithMode, openNoFollow, STATE_DIR_MODE, STATE_FILE_MODE } from "../core/safe-fs.js";
import { registry } from "../observe/metrics.js";
import { Counter } from "../observe/prom.js";
import type { StructuredOptions } from "../transforms/tag.js";
import { DocumentEncoder, type EncodedDocument } from "./elasticsearch-document.js";
import { DEFAULT_LOGS_PREFIX, logsIndexTemplate } from "./elasticsearch-schema.js";
import type { Sink, SinkReceipt } from "./sink.js";

/**
 * Elasticsearch sink: bulk `create` requests into daily indices, with a deterministic `_id` per line, so a
 * batch sent twice (retry, crash before the checkpoint, replay) is stored once: ES answers 409 for a line it
 * already holds, which counts as stored.
 *
 * Batches from concurrent `write` calls are packed into bulk requests of up to `flushBytes`, with up to
 * `concurrency` requests in flight. A write resolves when every one of its lines was stored or, when ES
 * rejected the line itself (mapping conflict, bad value), written with the reason to the dead-letter file
 * (fsynced). Whole-request failures (ES down, 429, 5xx) and per-item 429/5xx are retried with exponential
 * backoff; after `retryTimeout` without success the write rejects and the pipeline retries the batch.
 */

export interface ElasticsearchSinkOptions {
  connection: EsConnection;
  structured: StructuredOptions;
  deadLetterPath: string;
  indexPrefix?: string;
  flushBytes?: number;
  concurrency?: number;
  retryTimeout?: number;
  retryInitialDelay?: number;
  retryMaxDelay?: number;
  /** Called with warnings (ES unreachable, rejections); never receives secrets. */
  onWarn?: (msg: string, fields: Record<string, unknown>) => void;
}

const esMetrics = {
  requests: new Counter({
    name: "ikontainer_es_bulk_requests_total",
    help: "Bulk requests sent to Elasticsearch, by outcome (ok, failed)",
    labelNames: ["outcome"],
    registers: [registry],
  }),
  retriedDocs: new Counter({
    name: "ikontainer_es_retried_docs_total",
    help: "Documents sent again after a failed request or a 429/5xx item",
    registers: [registry],
  }),
  deadLettered: new Counter({
    name: "ikontainer_es_dead_lettered_total",
    help: "Documents Elasticsearch rejected, written to the dead-letter file",
    registers: [registry],
  }),
  duplicates: new Counter({
    name: "ikontainer_es_duplicate_docs_total",
    help: "Documents Elasticsearch already held (409 on create): a replay that stored nothing twice",
    registers: [registry],
  }),
};

export { documentId } from "./elasticsearch-document.js";

interface Job {
  total: number;
  done: number;
  failed: boolean;
  deadline: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Item {
  job: Job;
  id: string;
  index: string;
  /** The batch's documents as NDJSON bytes; this item's action line + source line are `start`..`end`. */
  chunk: Buffer;
  start: number;
  end: number;
  /** end - start: counted against flushBytes. */
  bytes: number;
}

/** Below this, a queue is not split across request slots (tiny bulks cost more than they save). */
const MIN_SPLIT_BYTES = 256 * 1024;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class ElasticsearchSink implements Sink {
  readonly id: string;
  /**
   * A file's next reads are taken while its earlier batches are indexed (ids make order and repeats harmless):
   * the lines of about `concurrency + 1` full requests (a line's document is about 4 times its bytes), so
   * requests stay full and in flight instead of one small read per round trip.
   */
  readonly writeAheadBytes: number;
  private readonly client: Client;
  private readonly prefix: string;
  private readonly flushBytes: number;
  private readonly concurrency: number;
  private readonly retryTimeout: number;
  private readonly retryInitial: number;
  private readonly retryMax: number;
  private readonly pending = new ItemQueue();
  private readonly encoder: DocumentEncoder;
  private pendingBytes = 0;
  private inFlight = 0;
  private failures = 0;
  private pausedUntil = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private templateReady = false;
  private templateInstalling: Promise<void> | undefined;
  private closed = false;
  private readonly jobs = new Set<Job>();
  private readonly runNonce = crypto.randomBytes(8).toString("hex");

  constructor(private readonly opts: ElasticsearchSinkOptions) {
    this.id = `elasticsearch:${redactUrl(opts.connection.node)}`;
    this.client = new Client({ ...clientOptions(opts.connection), Serializer: BulkAnswerSerializer });
    this.prefix = opts.indexPrefix ?? DEFAULT_LOGS_PREFIX;
    this.flushBytes = opts.flushBytes ?? 5 * 1024 * 1024;
    this.concurrency = Math.max(1, opts.concurrency ?? 2);
    this.encoder = new DocumentEncoder(opts.structured, this.prefix);
    this.writeAheadBytes = Math.ceil((this.flushBytes * (this.concurrency + 1)) / 4);
    this.retryTimeout = opts.retryTimeout ?? 30_000;
    this.retryInitial = opts.retryInitialDelay ?? 200;
    this.retryMax = opts.retryMaxDelay ?? 10_000;
  }

  write(batch: LineBatch): Promise<SinkReceipt | undefined> {
    if (this.closed) return Promise.reject(ERR_SINK(`${this.id}: sink is closed`));
    if (batch.lines.length === 0) return Promise.resolve(undefined);
    // A child's stdio (exec:…) cannot be replayed and its offsets restart at 0 with every run: ids are made
    // unique per sink instance, so a restarted child's first lines never look like the last run's.
    const run = batch.inputId.startsWith("exec:") ? `@${this.runNonce}` : "";
    return new Promise<SinkReceipt | undefined>((resolve, reject) => {
      const job: Job = {
        total: batch.lines.length,
        done: 0,
        failed: false,
        deadline: Date.now() + this.retryTimeout,
        resolve: () => resolve(undefined),
        reject,
      };
      // The batch's texts go into one Buffer at once: queued documents then hold bytes outside the JS heap,
      // not strings that live long enough to be promoted (with write-ahead, tens of thousands are queued).
      const docs = this.encoder.encode(batch, run);
      const { chunk, ends } = encodeChunk(docs);
      let start = 0;
      for (let i = 0; i < docs.length; i++) {
        const end = ends[i]!;
        const d = docs[i]!;
        const it: Item = { job, id: d.id, index: d.index, chunk, start, end, bytes: end - start };
        start = end;
        this.pending.push(it);
        this.pendingBytes += it.bytes;
      }
      this.jobs.add(job);
      this.pump();
    });
  }

  private backoff(): number {
    const base = Math.min(this.retryMax, this.retryInitial * 2 ** Math.min(this.failures, 16));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  /** Sends pending items while there is room in flight and ES is not backing off. */
  private pump(): void {
    if (this.closed) return;
    const now = Date.now();
    if (now < this.pausedUntil) {
      this.wakeAt(this.pausedUntil);
      return;
    }
    this.expireJobs(now);
    while (this.inFlight < this.concurrency && this.pending.length > 0) {
      // Spread what is queued over the free request slots: Elasticsearch indexes one bulk request of one
      // shard on one write thread, so two half-size requests use two cores where one full-size uses one.
      const free = this.concurrency - this.inFlight;
      const limit = Math.min(this.flushBytes, Math.max(MIN_SPLIT_BYTES, Math.ceil(this.pendingBytes / free)));
      const items: Item[] = [];
      let size = 0;
      while (this.pending.length > 0) {
        const it = this.pending.first()!;
        if (it.job.failed) {
          this.pending.shift();
          this.pendingBytes -= it.bytes;
          continue;
        }
        if (items.length > 0 && size + it.bytes > limit) break;
        this.pending.shift();
        this.pendingBytes -= it.bytes;
        items.push(it);
        size += it.bytes;
      }
      if (items.length === 0) break;
      this.inFlight++;
      void this.send(items).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private wakeAt(t: number): void {
    if (this.wakeTimer) return;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.pump();
      },
      Math.max(0, t - Date.now()),
    );
  }

  /** Jobs past their retry deadline are handed back to the pipeline (rejected); their items are skipped. */
  private expireJobs(now: number): void {
    for (const job of this.jobs) {
      if (!job.failed && job.done < job.total && now > job.deadline) {
        this.failJob(
          job,
          ERR_SINK(
            `${this.id}: not accepted within ${this.retryTimeout} ms (Elasticsearch unreachable or busy)`,
          ),
        );
      }
    }
  }

  private failJob(job: Job, e: unknown): void {
    if (job.failed) return;
    job.failed = true;
    this.jobs.delete(job);
    job.reject(e);
  }

  private complete(item: Item): void {
    const job = item.job;
    if (job.failed) return;
    if (++job.done === job.total) {
      this.jobs.delete(job);
      job.resolve();
    }
  }

  private async ensureTemplate(): Promise<void> {
    if (this.templateReady) return;
    this.templateInstalling ??= this.client.indices
      .putIndexTemplate({ name: this.prefix, ...logsIndexTemplate(this.prefix) } as never)
      .then(() => {
        this.templateReady = true;
      })
      .finally(() => {
        this.templateInstalling = undefined;
      });
    await this.templateInstalling;
  }

  private requeue(items: Item[], why: string): void {
    this.failures++;
    const delay = this.backoff();
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + delay);
    esMetrics.retriedDocs.inc(items.length);
    this.opts.onWarn?.("Elasticsearch did not accept documents; retrying", {
      sink: this.id,
      docs: items.length,
      err: why,
      retryInMs: delay,
    });
    // retried items go first: they are the oldest
    const again = items.filter((it) => !it.job.failed);
    for (const it of again) this.pendingBytes += it.bytes;
    this.pending.unshift(again);
  }

  private async send(items: Item[]): Promise<void> {
    const body = bulkBody(items);
    let resp: {
      errors: boolean;
      items?: Array<Record<string, { status: number; error?: { type?: string; reason?: string } }>>;
    };
    try {
      await this.ensureTemplate();
      resp = (await this.client.bulk({
        body,
        filter_path: "errors,items.*.status,items.*.error.type,items.*.error.reason",
      } as never)) as typeof resp;
    } catch (e) {
      esMetrics.requests.inc({ outcome: "failed" });
      if (this.closed) return;
      this.requeue(items, describeError(e));
      return;
    }
    esMetrics.requests.inc({ outcome: "ok" });
    if (!resp.errors) {
      this.failures = 0;
      for (const it of items) this.complete(it);
      return;
    }
    const retry: Item[] = [];
    const dead: Array<{ item: Item; status: number; error: { type?: string; reason?: string } }> = [];
    const done: Item[] = [];
    const results = resp.items ?? [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const r = results[i] ? Object.values(results[i]!)[0] : undefined;
      if (!r) retry.push(it);
      else if (r.status >= 200 && r.status < 300) done.push(it);
      else if (r.status === 409) {
        esMetrics.duplicates.inc();
        done.push(it);
      } else if (r.status === 429 || r.status >= 500) retry.push(it);
      else dead.push({ item: it, status: r.status, error: r.error ?? {} });
    }
    if (dead.length > 0) {
      try {
        await this.deadLetter(dead);
        esMetrics.deadLettered.inc(dead.length);
        for (const d of dead) done.push(d.item);
        this.opts.onWarn?.("Elasticsearch rejected documents; written to the dead-letter file", {
          sink: this.id,
          docs: dead.length,
          file: this.opts.deadLetterPath,
          reason: dead[0]!.error.reason,
        });
      } catch (e) {
        // cannot record the rejection durably: the batch is not accepted
        for (const d of dead) this.failJob(d.item.job, ERR_SINK(`${this.id}: ${errorMessage(e)}`, e));
      }
    }
    for (const it of done) this.complete(it);
    if (retry.length > 0) this.requeue(retry, "bulk items answered 429/5xx");
    else this.failures = 0;
  }

  private async deadLetter(
    dead: Array<{ item: Item; status: number; error: { type?: string; reason?: string } }>,
  ): Promise<void> {
    const path = this.opts.deadLetterPath;
    mkdirWithMode(dirname(path), STATE_DIR_MODE);
    const at = new Date().toISOString();
    let text = "";
    for (const d of dead) {
      text += `${JSON.stringify({
        at,
        sink: this.id,
        index: d.item.index,
        _id: d.item.id,
        status: d.status,
        error_type: d.error.type,
        reason: d.error.reason,
        document: JSON.parse(sourceOf(d.item)),
      })}\n`;
    }
    // A state file like the others: no symlink followed, 0600 (src/core/safe-fs.ts).
    const fd = openNoFollow(path, "a", STATE_FILE_MODE);
    try {
      writeSync(fd, text);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    for (const job of [...this.jobs])
      this.failJob(job, ERR_SINK(`${this.id}: closed before Elasticsearch accepted`));
    this.pending.clear();
    this.pendingBytes = 0;
    // wait briefly for requests in flight so the socket closes cleanly
    for (let i = 0; i < 50 && this.inFlight > 0; i++) await sleep(20);
    await this.client.close();
  }
}

/** The NDJSON texts of a batch encoded into one Buffer, with each document's end offset. */
function encodeChunk(docs: readonly EncodedDocument[]): { chunk: Buffer; ends: Uint32Array } {
  let units = 0;
  for (const d of docs) units += d.ndjson.length;
  let buf = Buffer.allocUnsafe(units + 1024); // exact for ASCII; grown below for other text
  const ends = new Uint32Array(docs.length);
  let n = 0;
  for (let i = 0; i < docs.length; i++) {
    const s = docs[i]!.ndjson;
    if (buf.length - n < s.length * 3) {
      const need = Buffer.byteLength(s);
      if (buf.length - n < need) {
        const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, n + need));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
    }
    n += buf.write(s, n);
    ends[i] = n;
  }
  return { chunk: buf.subarray(0, n), ends };
}

/**
 * The request body as one Buffer: runs of items that are next to each other in their batch's chunk are copied
 * at once. (A string body built with `+=` was flattened and measured again by the client and encoded once
 * more by the socket: about 3 µs per document.)
 */
function bulkBody(items: readonly Item[]): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  let run: Item | undefined;
  let runEnd = 0;
  for (const it of items) {
    if (run && it.chunk === run.chunk && it.start === runEnd) {
      runEnd = it.end;
      continue;
    }
    if (run) parts.push(run.chunk.subarray(run.start, runEnd));
    run = it;
    runEnd = it.end;
  }
  if (run) parts.push(run.chunk.subarray(run.start, runEnd));
  for (const p of parts) size += p.length;
  return Buffer.concat(parts, size);
}

/** The document (source line) of an item, for the dead-letter file. */
function sourceOf(it: Item): string {
  const text = it.chunk.toString("utf8", it.start, it.end);
  return text.slice(text.indexOf("\n") + 1);
}

/**
 * A bulk answer without item errors is not parsed: the per-item statuses that make up most of it are only
 * read when `errors` is true (parsing them cost about 1.5 µs per document).
 */
class BulkAnswerSerializer extends Serializer {
  override deserialize<T = unknown>(json: string): T {
    if (json.startsWith('{"errors":false,"items":[') || json === '{"errors":false}')
      return { errors: false } as T;
    return super.deserialize<T>(json);
  }
}

/**
 * FIFO of items: an array with a moving head. `Array.shift()` on a queue of tens of thousands of documents
 * copies the rest every time (over a quarter of the agent's CPU once write-ahead filled the queue).
 */
class ItemQueue {
  private items: Item[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  first(): Item | undefined {
    return this.items[this.head];
  }

  push(it: Item): void {
    this.items.push(it);
  }

  shift(): Item | undefined {
    if (this.head >= this.items.length) return undefined;
    const it = this.items[this.head]!;
    this.items[this.head++] = undefined as unknown as Item; // let it be collected
    if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return it;
  }

  /** Puts `first` ahead of everything queued (retried items are the oldest). */
  unshift(first: Item[]): void {
    this.items = [...first, ...this.items.slice(this.head)];
    this.head = 0;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

function describeError(e: unknown): string {
  if (e instanceof esErrors.ResponseError) return describeEsError(e);
  if (e instanceof esErrors.ConnectionError) return `connection error: ${e.message}`;
  if (e instanceof esErrors.TimeoutError) return "request timed out";
  return errorMessage(e);
}

/** `--output elasticsearch:http(s)://HOST:PORT` → a sink (settings from ES_SINK_SETTINGS, already resolved). */
export function elasticsearchSinkFromSpec(
  spec: string,
  ctx: { structured: StructuredOptions; stateDir: string; settings: Readonly<Record<string, unknown>> },
  onWarn?: ElasticsearchSinkOptions["onWarn"],
): ElasticsearchSink {
  const url = spec.replace(/^elasticsearch:/, "");
  if (url === "")
    throw ERR_INVALID_SETTING(
      "invalid --output: elasticsearch: needs a URL, e.g. elasticsearch:http://127.0.0.1:9200",
    );
  const s = ctx.settings;
  const opts: ElasticsearchSinkOptions = {
    connection: esConnection(url, s, process.env, "--output"),
    structured: ctx.structured,
    deadLetterPath:
      (s.esDeadLetter as string | undefined) ?? join(ctx.stateDir, "dead-letter", "elasticsearch.jsonl"),
  };
  if (s.esIndexPrefix !== undefined) opts.indexPrefix = s.esIndexPrefix as string;
  if (s.esFlushBytes !== undefined) opts.flushBytes = s.esFlushBytes as number;
  if (s.esConcurrency !== undefined) opts.concurrency = s.esConcurrency as number;
  if (s.esRetryTimeout !== undefined) opts.retryTimeout = s.esRetryTimeout as number;
  if (onWarn) opts.onWarn = onWarn;
  return new ElasticsearchSink(opts);
}
