import { uuidV7 as v7 } from "../../src/core/cuid.js";
import type { InstanceIdentity } from "../../src/discovery/records.js";
import { DnsRegistrar } from "../../src/discovery/registrar.js";
import { parseTsigSpec } from "../../src/discovery/tsig.js";
import type { UpdateTarget } from "../../src/discovery/update.js";
import type { KnotServer } from "../fixtures/knot.js";

export const quiet = { info() {}, warn() {}, error() {}, debug() {} };

/** Where updates for a test's knotd go: its address, key and zones. */
export const targetOf = (knot: KnotServer): UpdateTarget => ({
  server: { host: knot.host, port: knot.port },
  key: parseTsigSpec(knot.tsig),
  zone: knot.zone,
  reverseZone: knot.reverseZone,
  timeoutMs: 3000,
});

/** Instances, registrars and record names against one test's knotd (read when called: set up in beforeAll). */
export function registrarHelpers(ctx: () => { knot: KnotServer; target: UpdateTarget }) {
  const identity = (over: Partial<InstanceIdentity> = {}): InstanceIdentity => ({
    cuid: v7(),
    svcLabel: "web",
    namespace: "shop",
    zone: ctx().knot.zone,
    ip: "127.0.0.10",
    ports: [{ name: "http", port: 8080, proto: "tcp" }],
    pod: "web-7d9f-abcde",
    node: "node-1",
    started: new Date().toISOString(),
    ...over,
  });
  const registrar = (
    id: InstanceIdentity,
    over: Partial<ConstructorParameters<typeof DnsRegistrar>[0]> = {},
  ) =>
    new DnsRegistrar({
      target: ctx().target,
      identity: id,
      ttl: 1000,
      leaseMs: 60_000,
      renewMs: 20_000,
      backoffMs: 100,
      maxBackoffMs: 400,
      logger: quiet,
      ...over,
    });
  const inst = (id: InstanceIdentity) => `${id.cuid}.${id.svcLabel}.${id.namespace}.${ctx().knot.zone}`;
  const svc = (id: InstanceIdentity) => `${id.svcLabel}.${id.namespace}.${ctx().knot.zone}`;
  const rev = (ip: string) => `${ip.split(".").reverse().join(".")}.in-addr.arpa`;
  return { identity, registrar, inst, svc, rev };
}

/** The lease end (ms since the epoch) in an instance's TXT record (`"expires=…"`); NaN when there is none. */
export const leaseEnd = (txt: string | undefined): number =>
  Date.parse(/expires=([^"\s]+)/.exec(txt ?? "")?.[1] ?? "");

/**
 * Sleeps until a lease has run out by this machine's clock, which `ddns gc` reads (it removes an instance once
 * `expires` < now). Here the point is that time passes, so this is a sleep, but only as long as the lease says.
 */
export async function leasePassed(expiresMs: number): Promise<void> {
  if (!Number.isFinite(expiresMs)) throw new Error("the instance's TXT record has no expires= time");
  const left = expiresMs - Date.now() + 1;
  if (left > 0) await new Promise((r) => setTimeout(r, left));
}
