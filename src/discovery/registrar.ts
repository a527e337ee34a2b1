import { EventEmitter } from "node:events";
import { advertisedIp, advertisedPorts, ddnsConfigFrom, dnsNamespace } from "../config/ddns.js";
import { errorMessage } from "../core/errors.js";
import type { Logger } from "../observe/logger.js";
import { isDnsError } from "./client.js";
import { dnsMetrics } from "./metrics.js";
import { type InstanceIdentity, instanceName, svcLabelOf } from "./records.js";
import { dial } from "./resolve.js";
import {
  type DeregisterResult,
  deregisterInstance,
  publishedOf,
  registerInstance,
  renewInstance,
  type UpdateTarget,
} from "./update.js";

export interface RegistrarOptions {
  target: UpdateTarget;
  identity: InstanceIdentity;
  /** Record TTL (ms). */
  ttl: number;
  /** How long a registration lives without renewal (ms); `expires=` is now + lease. */
  leaseMs: number;
  /** How often the lease is renewed (ms). */
  renewMs: number;
  /** First retry delay after a failed registration (ms); doubles up to maxBackoffMs, with ±20% jitter. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Deregistration gives up after this long (ms) so SIGTERM handling stays bounded. */
  stopTimeoutMs?: number;
  logger: Pick<Logger, "info" | "warn" | "error" | "debug">;
  /** Publish only once every one of these accepts TCP connections (the app behind the instance is ready). */
  waitFor?: { host: string; port: number }[];
}

export type RegistrarState = "idle" | "registering" | "registered" | "stopped";

const resultLabel = (e: unknown): string =>
  isDnsError(e) ? (e.dns.tsigError ?? e.dns.rcode ?? (e.dns.answered ? "rejected" : "unreachable")) : "error";

/**
 * Publishes one instance in DNS for as long as it lives: registers (retrying with backoff, never blocking the
 * caller, so logging goes on while the DNS server is away), renews the lease, and deregisters on stop().
 * Events: "registered", "renewed", "retry" (error, delayMs), "deregistered" (DeregisterResult).
 */
export class DnsRegistrar extends EventEmitter {
  private _state: RegistrarState = "idle";
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private attempts = 0;
  /** False while every attempt failed before reaching the server: then there is nothing to deregister. */
  private mayHavePublished = false;
  readonly name: string;

  constructor(private readonly opts: RegistrarOptions) {
    super();
    this.name = instanceName(opts.identity);
  }

  private isStopped(): boolean {
    return this._state === "stopped";
  }

  get state(): RegistrarState {
    return this._state;
  }

  /** Starts registering in the background; returns at once. */
  start(): void {
    if (this._state !== "idle") return;
    this._state = "registering";
    this.loop = this.run().catch((e: unknown) => {
      this.opts.logger.error({ err: errorMessage(e), instance: this.name }, "DNS registrar stopped on a bug");
    });
  }

  /** One registration attempt whose failure is thrown (for `ddns register --once`); no renewal. */
  async registerOnce(): Promise<void> {
    await registerInstance(this.opts.target, this.opts.identity, {
      ttl: this.opts.ttl,
      leaseMs: this.opts.leaseMs,
    });
    dnsMetrics.updates.inc({ op: "register", result: "ok" });
  }

  /** Resolves once the records are published (for callers that want to wait, e.g. `ddns register`). */
  whenRegistered(): Promise<void> {
    if (this._state === "registered") return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.once("registered", () => resolve());
      this.once("stopped", () => reject(new Error("registrar stopped before registering")));
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
      this.timer.unref?.();
    });
  }

  private backoff(): number {
    const base = this.opts.backoffMs ?? 500;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const d = Math.min(max, base * 2 ** Math.min(this.attempts - 1, 20));
    return Math.round(d * (0.8 + Math.random() * 0.4));
  }

  private async run(): Promise<void> {
    const { target, identity, logger } = this.opts;
    const timing = { ttl: this.opts.ttl, leaseMs: this.opts.leaseMs };
    let registered = false;
    if (this.opts.waitFor && this.opts.waitFor.length > 0) await this.waitReady(this.opts.waitFor);
    while (this._state !== "stopped") {
      try {
        if (!registered) {
          await registerInstance(target, identity, timing);
          registered = true;
          this.mayHavePublished = true;
          this.attempts = 0;
          if (this.isStopped()) break;
          this._state = "registered";
          dnsMetrics.updates.inc({ op: "register", result: "ok" });
          dnsMetrics.registered.set(1);
          logger.info(
            {
              instance: this.name,
              ip: identity.ip,
              zone: target.zone,
              server: `${target.server.host}:${target.server.port}`,
            },
            "registered in DNS",
          );
          this.emit("registered");
        } else {
          const ok = await renewInstance(target, identity, timing);
          if (this.isStopped()) break;
          dnsMetrics.updates.inc({ op: "renew", result: ok ? "ok" : "NXRRSET" });
          if (!ok) {
            logger.warn(
              { instance: this.name },
              "DNS records were removed (lease passed?); registering again",
            );
            registered = false;
            continue;
          }
          this.emit("renewed");
        }
        await this.sleep(this.opts.renewMs);
      } catch (e) {
        if (!(isDnsError(e) && e.dns.sent === false)) this.mayHavePublished = true;
        if (this.isStopped()) break;
        this.attempts++;
        const op = registered ? "renew" : "register";
        dnsMetrics.updates.inc({ op, result: resultLabel(e) });
        if (!registered) dnsMetrics.retries.inc();
        const delay = registered ? Math.min(this.opts.renewMs, this.backoff()) : this.backoff();
        const answered = isDnsError(e) && e.dns.answered;
        // A refused update or bad key needs an operator: say so loudly, but keep trying in case they fix it.
        (answered ? logger.error : logger.warn).call(
          logger,
          {
            instance: this.name,
            err: errorMessage(e),
            code: (e as { code?: string }).code,
            retryInMs: delay,
          },
          `DNS ${op} failed; retrying`,
        );
        this.emit("retry", e, delay);
        await this.sleep(delay);
      }
    }
  }

  /** Polls the advertised TCP ports until all accept a connection (or stop() is called). */
  private async waitReady(ports: { host: string; port: number }[]): Promise<void> {
    const pending = new Set(ports);
    let logged = false;
    while (pending.size > 0 && !this.isStopped()) {
      for (const p of [...pending]) {
        try {
          (await dial(p.host, p.port, 1000)).destroy();
          pending.delete(p);
        } catch {
          // not listening yet
        }
      }
      if (pending.size === 0) break;
      if (!logged) {
        logged = true;
        this.opts.logger.info(
          { instance: this.name, waitingFor: [...pending].map((p) => `${p.host}:${p.port}`) },
          "waiting for the advertised ports to accept connections before registering in DNS",
        );
      }
      await this.sleep(200);
    }
  }

  /** Stops renewing and removes this instance's records (retried within stopTimeoutMs, default 10 s). */
  async stop(): Promise<DeregisterResult | undefined> {
    if (this._state === "stopped") return undefined;
    const wasPublished = this._state === "registered";
    const wasIdle = this._state === "idle";
    this._state = "stopped";
    this.emit("stopped");
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
    dnsMetrics.registered.set(0);
    if (wasIdle || !this.mayHavePublished) return undefined;
    // Even if the first registration never confirmed, an update may have landed: deregister anyway (guarded).
    // Exchanges that time out or lose their connection are tried again until the budget ends: a busy server (on a
    // loaded node knotd can take about a second per update) must not leave records behind that point at an IP
    // the next pod may get. An answered refusal (bad key, REFUSED) is final.
    const deadline = Date.now() + (this.opts.stopTimeoutMs ?? DEREGISTER_BUDGET_MS);
    let lastError: unknown;
    for (let attempt = 1; Date.now() < deadline; attempt++) {
      try {
        const result = await beforeDeadline(
          deregisterInstance(this.opts.target, publishedOf(this.opts.identity)),
          deadline,
        );
        dnsMetrics.updates.inc({ op: "deregister", result: "ok" });
        this.opts.logger.info(
          { instance: this.name, ...result, wasPublished, attempt },
          "deregistered from DNS",
        );
        this.emit("deregistered", result);
        return result;
      } catch (e) {
        lastError = e;
        dnsMetrics.updates.inc({ op: "deregister", result: resultLabel(e) });
        if (isDnsError(e) && e.dns.answered) break;
        const pause = Math.min(500, deadline - Date.now());
        if (pause <= 0) break;
        this.opts.logger.warn(
          { instance: this.name, err: errorMessage(e), attempt, retryInMs: pause },
          "DNS deregistration failed; retrying",
        );
        // a referenced timer: while stopping, it may be the only thing keeping the process alive
        await new Promise((r) => setTimeout(r, pause));
      }
    }
    this.opts.logger.error(
      { instance: this.name, err: errorMessage(lastError) },
      "DNS deregistration failed; `ikontainer ddns gc` removes the records once the lease passes",
    );
    return undefined;
  }
}

/** How long stop() keeps trying to remove the records (well inside Kubernetes' default 30 s grace period). */
export const DEREGISTER_BUDGET_MS = 10_000;

/** `work`, or a rejection once `deadline` (ms since the epoch) has passed. */
function beforeDeadline<T>(work: Promise<T>, deadline: number): Promise<T> {
  const ms = Math.max(0, deadline - Date.now());
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`deregistration did not finish within its budget (${ms} ms left)`)),
      ms,
    );
    timer.unref();
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/**
 * Builds the registrar from resolved settings (DDNS_SETTINGS merged into the command's table); undefined when
 * --ddns-server is not set. Namespace, pod, node and address come from the Downward API env by default.
 */
export function createRegistrar(
  settings: Record<string, unknown>,
  ctx: {
    cuid: string;
    svc: string;
    logger: RegistrarOptions["logger"];
    env?: NodeJS.ProcessEnv;
    started?: Date;
  },
): DnsRegistrar | undefined {
  const env = ctx.env ?? process.env;
  const cfg = ddnsConfigFrom(settings);
  if (!cfg) return undefined;
  const identity: InstanceIdentity = {
    cuid: ctx.cuid.toLowerCase(),
    svcLabel: svcLabelOf(ctx.svc),
    namespace: dnsNamespace(settings, env),
    zone: cfg.zone,
    ip: advertisedIp(settings, env),
    ports: advertisedPorts(settings),
    pod: env.POD_NAME || undefined,
    node: env.NODE_NAME || undefined,
    started: (ctx.started ?? new Date()).toISOString(),
  };
  return new DnsRegistrar({
    target: {
      server: cfg.server,
      key: cfg.key,
      zone: cfg.zone,
      reverseZone: cfg.reverseZone,
      timeoutMs: cfg.timeoutMs,
    },
    identity,
    ttl: cfg.ttl,
    leaseMs: cfg.leaseMs,
    renewMs: cfg.renewMs,
    logger: ctx.logger,
    ...(settings.registerWhenReady === true
      ? {
          waitFor: identity.ports
            .filter((p) => p.proto === "tcp")
            .map((p) => ({ host: identity.ip, port: p.port })),
        }
      : {}),
  });
}
