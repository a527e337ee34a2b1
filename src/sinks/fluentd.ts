import { existsSync, readdirSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { ConnectionOptions } from "node:tls";
import {
  EventTime,
  FluentClient,
  type FluentClientOptions,
  FluentError,
  FluentSocketEvent,
} from "@fluent-org/logger";
import { BUFFER_SETTINGS } from "../config/buffer.js";
import { FLUENTD_SETTINGS, type FluentdSettings } from "../config/fluentd.js";
import { kebab, resolveSettings } from "../config/settings.js";
import { parseHostPort } from "../config/units.js";
import { ERR_INVALID_SETTING, ERR_SINK, errorMessage } from "../core/errors.js";
import type { LineBatch, LogLine } from "../core/record.js";
import type { Logger } from "../observe/logger.js";
import { createLogger, silentLogger } from "../observe/logger.js";
import { registry } from "../observe/metrics.js";
import { Counter } from "../observe/prom.js";
import { type StructuredOptions, streamIdentity, toStructured } from "../transforms/tag.js";
import { BufferedSink, bufferDirName } from "./buffer.js";
import { documentId } from "./elasticsearch.js";
import type { Sink, SinkReceipt } from "./sink.js";

/**
 * Ships structured records to fluentd (or Fluent Bit) over the forward protocol, one chunk per batch, and
 * counts a batch as accepted only when the receiver acknowledged its chunk (`require_ack_response`).
 *
 * Tag `ikontainer.<svc>`; event time is an EventTime (seconds + nanoseconds). A failed batch (not reachable,
 * no ack in time, connection lost) rejects and drops this connection: the next attempt starts a fresh one,
 * so events still waiting inside the client are never sent late behind our back.
 */

export interface FluentdSinkOptions {
  host: string;
  port: number;
  structured: StructuredOptions;
  tagPrefix?: string;
  ackTimeoutMs?: number;
  connectTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  tls?: ConnectionOptions;
  security?: { clientHostname: string; sharedKey: string; username?: string; password?: string };
  log?: Logger;
}

const counterAcked = new Counter({
  name: "ikontainer_fluentd_acked_records_total",
  help: "Records fluentd acknowledged",
  labelNames: ["sink"],
  registers: [registry],
});
const counterFailed = new Counter({
  name: "ikontainer_fluentd_failed_batches_total",
  help: "Batches fluentd did not acknowledge, by reason (unreachable, ack_timeout, connection)",
  labelNames: ["sink", "reason"],
  registers: [registry],
});

interface EmitTurn {
  settled: boolean;
  done: Promise<boolean>;
}

interface ClientState {
  /** An error that retrying on this connection cannot fix (authentication, certificate). */
  fatal: Error | undefined;
  closes: number;
  onClose: Array<() => void>;
}

const CERT_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|HOSTNAME|ERR_SSL|ERR_TLS/;
function isFatal(e: Error): boolean {
  if (e instanceof FluentError.AuthError || e instanceof FluentError.FatalSocketError) return true;
  const code = (e as NodeJS.ErrnoException).code;
  return typeof code === "string" && CERT_ERRORS.test(code);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Seconds + nanoseconds: CRI's nanosecond text when the source had it, else the millisecond time. */
export function eventTimeOf(line: LogLine, batch: LineBatch): EventTime {
  if (line.timeText) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)$/.exec(line.timeText);
    const secMs = m ? Date.parse(`${m[1]}${m[3]}`) : Number.NaN;
    if (m && Number.isFinite(secMs))
      return new EventTime(Math.floor(secMs / 1000), Number((m[2] ?? "").padEnd(9, "0")));
  }
  const ms = line.time ?? batch.readAt;
  const sec = Math.floor(ms / 1000);
  return new EventTime(sec, Math.round((ms - sec * 1000) * 1e6));
}

export class FluentdSink implements Sink {
  readonly id: string;
  private client: FluentClient | undefined;
  private lastSocketError: Error | undefined;
  private readonly states = new WeakMap<FluentClient, ClientState>();
  /** The latest write's turn: resolves when it has emitted (true) or given up before sending (false). */
  private emitTurn: EmitTurn = { settled: true, done: Promise.resolve(true) };
  private readonly o: Required<Omit<FluentdSinkOptions, "tls" | "security" | "log">> &
    Pick<FluentdSinkOptions, "tls" | "security">;
  private readonly log: Logger;
  private closed = false;

  constructor(options: FluentdSinkOptions) {
    this.o = {
      tagPrefix: "ikontainer",
      ackTimeoutMs: 30_000,
      connectTimeoutMs: 10_000,
      reconnectMinMs: 100,
      reconnectMaxMs: 30_000,
      ...options,
    };
    this.log = options.log ?? silentLogger;
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    this.id = `fluentd://${host}:${options.port}`;
  }

  private getClient(): FluentClient {
    if (this.client) return this.client;
    const opts: FluentClientOptions = {
      eventMode: "PackedForward",
      ack: { ackTimeout: this.o.ackTimeoutMs },
      milliseconds: true,
      socket: {
        host: this.o.host,
        port: this.o.port,
        // Idle timeout; the client reconnects on the next write.
        timeout: Math.max(this.o.connectTimeoutMs, this.o.ackTimeoutMs + 5000, 60_000),
        reconnect: {
          delay: this.o.reconnectMinMs,
          backoff: 2,
          minDelay: this.o.reconnectMinMs,
          maxDelay: this.o.reconnectMaxMs,
        },
        ...(this.o.tls ? { tls: this.o.tls } : {}),
      },
      ...(this.o.security ? { security: this.o.security } : {}),
    };
    const client = new FluentClient(null, opts);
    const state: ClientState = { fatal: undefined, closes: 0, onClose: [] };
    client.socketOn(FluentSocketEvent.ERROR, (e: Error) => {
      this.lastSocketError = e;
      if (isFatal(e)) state.fatal = e;
    });
    client.socketOn(FluentSocketEvent.CLOSE, () => {
      state.closes++;
      for (const f of state.onClose.splice(0)) f();
    });
    this.states.set(client, state);
    this.client = client;
    return client;
  }

  /** Drops the connection and everything the client still holds (a fresh one is made on the next write). */
  private recycle(client: FluentClient): void {
    if (this.client === client) {
      this.client = undefined;
      this.log.debug(
        { sink: this.id, err: this.lastSocketError?.message },
        "fluentd: dropping the connection",
      );
    }
    void Promise.race([client.shutdown(), sleep(2000)]).catch(() => {});
  }

  private reason(): string {
    const e = this.lastSocketError;
    if (!e) return "";
    if (e instanceof FluentError.SharedKeyMismatchError || e instanceof FluentError.AuthError)
      return `: authentication failed (${e.message}); check --fluentd-shared-key-file / IKONTAINER_FLUENTD_SHARED_KEY`;
    return `: ${e.message}`;
  }

  async write(batch: LineBatch): Promise<SinkReceipt | undefined> {
    if (this.closed) throw ERR_SINK(`${this.id}: sink is closed`);
    if (batch.lines.length === 0) return undefined;
    const tag = `${this.o.tagPrefix}.${streamIdentity(batch.stream, this.o.structured.identity).svc}`;
    const cuid = streamIdentity(batch.stream, this.o.structured.identity).cuid;
    const records = batch.lines.map((l) => {
      const rec = toStructured(l, batch, this.o.structured) as Record<string, unknown>;
      // The same offset and document id the Elasticsearch sink uses: fluentd's out_elasticsearch can use
      // `id_key ikontainer_id`, so a chunk sent twice (at-least-once) is still stored once.
      rec.ikontainer_offset = l.offset;
      rec.ikontainer_id = documentId(cuid, batch, l.offset, l.part, l.bytes);
      return rec;
    });
    // Concurrent writes emit in the order they were called (one chunk each, acks awaited in parallel); a write
    // whose predecessor could not even be sent fails too, so a retry resends them in their order.
    const prev = this.emitTurn;
    let release!: (sent: boolean) => void;
    const mine: EmitTurn = { settled: false, done: Promise.resolve(true) };
    mine.done = new Promise<boolean>((r) => {
      release = (sent) => {
        mine.settled = true;
        r(sent);
      };
    });
    this.emitTurn = mine;
    let client: FluentClient;
    try {
      // A predecessor that gave up before we were called says nothing about this attempt.
      const prevSent = prev.settled ? true : await prev.done;
      if (!prevSent) throw ERR_SINK(`${this.id}: cannot connect to fluentd${this.reason()}`);
      if (this.closed) throw ERR_SINK(`${this.id}: sink is closed`);
      client = this.getClient();
      // Emit only on an established connection: events queued inside the client while it is down would be
      // sent later on their own, after we already reported this batch as failed (a duplicate after our retry).
      const state = this.states.get(client)!;
      const deadline = Date.now() + this.o.connectTimeoutMs;
      while (!client.writable) {
        if (this.closed || Date.now() >= deadline || this.client !== client || state.fatal) {
          counterFailed.inc({ sink: this.id, reason: "unreachable" });
          this.recycle(client);
          throw ERR_SINK(`${this.id}: cannot connect to fluentd${this.reason()}`);
        }
        await sleep(20);
      }
    } catch (e) {
      release(false);
      throw e;
    }
    const state = this.states.get(client)!;
    const emits = records.map((r, i) => client.emit(tag, r, eventTimeOf(batch.lines[i]!, batch)));
    // The next write may emit now: its events go into a later flush, hence a later chunk.
    setImmediate(() => release(true));
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), this.o.ackTimeoutMs + this.o.connectTimeoutMs + 1000);
    });
    // A connection lost before the ack fails the batch at once (the client would wait for the ack timeout).
    let onClose: (() => void) | undefined;
    const lost = new Promise<"timeout">((r) => {
      onClose = () => r("timeout");
      state.onClose.push(onClose);
    });
    const settled = await Promise.race([Promise.allSettled(emits), guard, lost]);
    clearTimeout(timer);
    state.onClose = state.onClose.filter((f) => f !== onClose);
    if (settled === "timeout") {
      counterFailed.inc({ sink: this.id, reason: "connection" });
      this.recycle(client);
      throw ERR_SINK(`${this.id}: batch not sent: connection to fluentd lost${this.reason()}`);
    }
    const failed = settled.find((s) => s.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) {
      const ackTimeout = failed.reason instanceof FluentError.AckTimeoutError;
      counterFailed.inc({ sink: this.id, reason: ackTimeout ? "ack_timeout" : "connection" });
      this.recycle(client);
      throw ERR_SINK(
        ackTimeout
          ? `${this.id}: fluentd did not acknowledge the batch within ${this.o.ackTimeoutMs} ms (--fluentd-ack-timeout)`
          : `${this.id}: batch not acknowledged: ${errorMessage(failed.reason)}${this.reason()}`,
        failed.reason,
      );
    }
    counterAcked.inc({ sink: this.id }, records.length);
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = undefined;
    if (c) await Promise.race([c.shutdown().catch(() => {}), sleep(2000)]);
  }
}

function readSecret(
  file: string | undefined,
  envValue: string | undefined,
  what: string,
): string | undefined {
  if (file) {
    try {
      return readFileSync(file, "utf8").trim();
    } catch (e) {
      throw ERR_INVALID_SETTING(`invalid ${what}: cannot read ${file}: ${(e as Error).message}`);
    }
  }
  return envValue === "" ? undefined : envValue;
}

function readPem(file: string | undefined, what: string): Buffer | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (e) {
    throw ERR_INVALID_SETTING(`invalid ${what}: cannot read ${file}: ${(e as Error).message}`);
  }
}

/**
 * `fluentd://HOST:PORT[?tls=true&ca=FILE&shared-key-file=FILE&ack-timeout=5s…]`: query keys are the
 * `--fluentd-*` settings without the prefix and override them for this output only.
 */
export function parseFluentdSpec(
  spec: string,
  settings: Readonly<Record<string, unknown>>,
  env: NodeJS.ProcessEnv = process.env,
): { host: string; port: number; settings: FluentdSettings } {
  const m = /^fluentd:\/\/([^?/]+)\/?(?:\?(.*))?$/.exec(spec);
  if (!m) throw ERR_INVALID_SETTING(`invalid --output: "${spec}" (expected fluentd://HOST:PORT)`);
  const { host, port } = parseHostPort(m[1]!, `--output ${spec}`, 24224);
  const flags: Record<string, unknown> = {};
  for (const def of FLUENTD_SETTINGS) if (settings[def.key] !== undefined) flags[def.key] = settings[def.key];
  const known = new Map(FLUENTD_SETTINGS.map((d) => [kebab(d.key).replace(/^fluentd-/, ""), d.key]));
  for (const [k, v] of new URLSearchParams(m[2] ?? "")) {
    const key = known.get(k);
    if (!key)
      throw ERR_INVALID_SETTING(
        `invalid --output ${spec.split("?")[0]}: unknown option "${k}" (expected one of ${[...known.keys()].join(", ")})`,
      );
    flags[key] = v === "" ? "true" : v;
  }
  const s = resolveSettings(FLUENTD_SETTINGS, flags, env) as unknown as FluentdSettings;
  return { host, port, settings: s };
}

export interface FluentdFactoryContext {
  structured: StructuredOptions;
  stateDir: string;
  settings: Readonly<Record<string, unknown>>;
  log?: Logger;
  env?: NodeJS.ProcessEnv;
}

/** The sink for one `--output fluentd://…`, behind the on-disk buffer unless `--no-buffer`. */
export function createFluentdSink(spec: string, ctx: FluentdFactoryContext): Sink {
  const env = ctx.env ?? process.env;
  const { host, port, settings: s } = parseFluentdSpec(spec, ctx.settings, env);
  // The agent's own log level (the sink factory gets settings, not the logger).
  const level = ctx.settings.logLevel;
  const log = ctx.log ?? (typeof level === "string" ? createLogger(level) : undefined);
  const tls: ConnectionOptions | undefined =
    s.fluentdTls || s.fluentdCa || s.fluentdCert
      ? {
          ca: readPem(s.fluentdCa, "--fluentd-ca"),
          cert: readPem(s.fluentdCert, "--fluentd-cert"),
          key: readPem(s.fluentdKey, "--fluentd-key"),
          servername: s.fluentdServername ?? (/^[\d.:]+$/.test(host) ? undefined : host),
          rejectUnauthorized: !s.fluentdTlsInsecure,
        }
      : undefined;
  if (s.fluentdCert && !s.fluentdKey)
    throw ERR_INVALID_SETTING("invalid --fluentd-cert: give the client key with --fluentd-key");
  const sharedKey = readSecret(
    s.fluentdSharedKeyFile,
    env.IKONTAINER_FLUENTD_SHARED_KEY,
    "--fluentd-shared-key-file",
  );
  const password = readSecret(
    s.fluentdPasswordFile,
    env.IKONTAINER_FLUENTD_PASSWORD,
    "--fluentd-password-file",
  );
  if (s.fluentdUsername && !sharedKey)
    throw ERR_INVALID_SETTING("invalid --fluentd-username: user authentication needs the shared key as well");
  const inner = new FluentdSink({
    host,
    port,
    structured: ctx.structured,
    tagPrefix: s.fluentdTagPrefix,
    ackTimeoutMs: s.fluentdAckTimeout,
    connectTimeoutMs: s.fluentdConnectTimeout,
    reconnectMaxMs: s.fluentdReconnectMax,
    ...(tls ? { tls } : {}),
    ...(sharedKey
      ? {
          security: {
            clientHostname: s.fluentdClientHostname ?? hostname(),
            sharedKey,
            ...(s.fluentdUsername ? { username: s.fluentdUsername, password: password ?? "" } : {}),
          },
        }
      : {}),
    ...(log ? { log } : {}),
  });
  const bufferFlags: Record<string, unknown> = {};
  for (const def of BUFFER_SETTINGS)
    if (ctx.settings[def.key] !== undefined) bufferFlags[def.key] = ctx.settings[def.key];
  const b = resolveSettings(BUFFER_SETTINGS, bufferFlags, env);
  const dir = join(ctx.stateDir, "buffer", bufferDirName(inner.id));
  if (!b.buffer) {
    const left = existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith(".seg")).length : 0;
    if (left > 0)
      log?.warn(
        { sink: inner.id, dir },
        "--no-buffer: lines queued by an earlier run stay in the buffer folder until it is used again",
      );
    return inner;
  }
  return new BufferedSink(inner, {
    dir,
    maxBytes: b.bufferMaxBytes as number,
    retryMaxMs: s.fluentdReconnectMax,
    ...(log ? { log } : {}),
  });
}
