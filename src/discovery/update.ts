import { type DnsServer, isDnsError, type Prerequisite, query, sendUpdate, type UpdateOp } from "./client.js";
import {
  addressType,
  type InstanceIdentity,
  instanceName,
  instanceTxt,
  inZone,
  reverseName,
  serviceName,
  srvName,
} from "./records.js";
import type { TsigKey } from "./tsig.js";
import { fqdn } from "./wire.js";

/** Where updates go: the authoritative server, its key, the forward zone and optionally the reverse zone. */
export interface UpdateTarget {
  server: DnsServer;
  key: TsigKey;
  zone: string;
  reverseZone?: string | undefined;
  timeoutMs?: number;
}

export interface SrvRecord {
  name: string;
  data: { priority: number; weight: number; port: number; target: string };
}

/** What one instance has published, as the agent knows it or as `ddns gc` reads it from a zone transfer. */
export interface PublishedInstance {
  instance: string;
  service: string;
  ips: string[];
  srvs: SrvRecord[];
  /** The TXT strings: `ddns gc` removes only while they are unchanged (a renewal in between wins). */
  txt?: string[];
}

export function publishedOf(id: InstanceIdentity): PublishedInstance {
  const instance = instanceName(id);
  const service = serviceName(id);
  return {
    instance,
    service,
    ips: [id.ip],
    srvs: id.ports.map((p) => ({
      name: srvName(p, service),
      data: { priority: 0, weight: 10, port: p.port, target: instance },
    })),
  };
}

const reverseApplies = (t: UpdateTarget, ip: string): boolean =>
  t.reverseZone !== undefined && inZone(reverseName(ip), t.reverseZone);

/**
 * Publishes every record of an instance in one atomic update of the forward zone, then points the reverse
 * PTR at it (the newest instance holding an address owns its PTR).
 */
export async function registerInstance(
  t: UpdateTarget,
  id: InstanceIdentity,
  opts: { ttl: number; leaseMs: number; now?: number },
): Promise<void> {
  const p = publishedOf(id);
  const type = addressType(id.ip);
  const expires = new Date((opts.now ?? Date.now()) + opts.leaseMs);
  const ttl = Math.round(opts.ttl / 1000);
  const updates: UpdateOp[] = [
    { kind: "deleteRRset", name: p.instance, type: "A" },
    { kind: "deleteRRset", name: p.instance, type: "AAAA" },
    { kind: "deleteRRset", name: p.instance, type: "TXT" },
    { kind: "add", name: p.instance, type, ttl, data: id.ip },
    { kind: "add", name: p.instance, type: "TXT", ttl, data: instanceTxt(id, expires) },
    { kind: "add", name: p.service, type, ttl, data: id.ip },
    { kind: "add", name: p.service, type: "PTR", ttl, data: p.instance },
    ...p.srvs.map((s): UpdateOp => ({ kind: "add", name: s.name, type: "SRV", ttl, data: s.data })),
  ];
  await sendUpdate(t.server, t.key, t.zone, [], updates, { timeoutMs: t.timeoutMs, what: "registration" });
  if (reverseApplies(t, id.ip)) {
    const rev = reverseName(id.ip);
    await sendUpdate(
      t.server,
      t.key,
      t.reverseZone!,
      [],
      [
        { kind: "deleteRRset", name: rev, type: "PTR" },
        { kind: "add", name: rev, type: "PTR", ttl, data: p.instance },
      ],
      { timeoutMs: t.timeoutMs, what: "reverse registration" },
    );
  }
}

/**
 * Renews the lease (new `expires=`) only while the instance's TXT still exists. Returns false when the
 * records are gone (removed by `ddns gc` after a long outage): the caller registers again.
 */
export async function renewInstance(
  t: UpdateTarget,
  id: InstanceIdentity,
  opts: { ttl: number; leaseMs: number; now?: number },
): Promise<boolean> {
  const p = publishedOf(id);
  const ttl = Math.round(opts.ttl / 1000);
  const expires = new Date((opts.now ?? Date.now()) + opts.leaseMs);
  try {
    await sendUpdate(
      t.server,
      t.key,
      t.zone,
      [{ kind: "rrsetExists", name: p.instance, type: "TXT" }],
      [
        { kind: "deleteRRset", name: p.instance, type: "TXT" },
        { kind: "add", name: p.instance, type: "TXT", ttl, data: instanceTxt(id, expires) },
        // Re-adding the shared records heals a rare race with a sibling's deregistration (adds are idempotent).
        { kind: "add", name: p.service, type: addressType(id.ip), ttl, data: id.ip },
        { kind: "add", name: p.service, type: "PTR", ttl, data: p.instance },
      ],
      { timeoutMs: t.timeoutMs, what: "lease renewal" },
    );
    return true;
  } catch (e) {
    if (isDnsError(e) && e.dns.rcode === "NXRRSET") return false;
    throw e;
  }
}

export interface DeregisterResult {
  /** False when the instance's records were already gone or changed (renewed meanwhile, for gc). */
  removed: boolean;
  /** Addresses whose reverse PTR now names a newer instance, so it was left alone. */
  reverseKeptFor: string[];
  /** Addresses still used by another live instance of the service, so the service A/AAAA was kept. */
  addressKept: string[];
}

/**
 * Removes only this instance's records, guarded by RFC 2136 prerequisites so a newer instance that reuses
 * the address keeps everything it published:
 *  1. reverse zone: the PTR is deleted only while its RRset is exactly {this instance}
 *  2. forward zone, one atomic update, only while this instance's TXT exists (for gc: is exactly the TXT it read)
 *     and while the service's PTR RRset (its list of live instances) is exactly what we read: if another live
 *     instance shares the address, the service A/AAAA stays; if an instance appeared meanwhile, the prerequisite
 *     fails (NXRRSET) and we read again.
 */
export async function deregisterInstance(
  t: UpdateTarget,
  p: PublishedInstance,
  /** Called after each read of the service's instance list, before the guarded update (tests race it). */
  afterRead?: (attempt: number) => Promise<void>,
): Promise<DeregisterResult> {
  const result: DeregisterResult = { removed: false, reverseKeptFor: [], addressKept: [] };
  const ownGuard: Prerequisite = p.txt
    ? { kind: "rrsetEquals", name: p.instance, records: [{ type: "TXT", data: p.txt }] }
    : { kind: "rrsetExists", name: p.instance, type: "TXT" };
  for (const ip of p.ips) {
    if (!reverseApplies(t, ip)) continue;
    try {
      await sendUpdate(
        t.server,
        t.key,
        t.reverseZone!,
        [{ kind: "rrsetEquals", name: reverseName(ip), records: [{ type: "PTR", data: p.instance }] }],
        [{ kind: "deleteRRset", name: reverseName(ip), type: "PTR" }],
        { timeoutMs: t.timeoutMs, what: "reverse deregistration" },
      );
    } catch (e) {
      if (!(isDnsError(e) && (e.dns.rcode === "NXRRSET" || e.dns.rcode === "NXDOMAIN"))) throw e;
      result.reverseKeptFor.push(ip);
    }
  }
  for (let attempt = 0; attempt < 8; attempt++) {
    const siblings = await liveInstances(t, p.service);
    const others = siblings.filter((n) => n !== fqdn(p.instance));
    const sharedIps = new Set<string>();
    // Which of our addresses another live instance also has (host networking, or a reused pod IP): 16 at a time.
    const checks = others.flatMap((other) => p.ips.map((ip) => ({ other, ip })));
    for (let i = 0; i < checks.length; i += 16) {
      await Promise.all(
        checks.slice(i, i + 16).map(async ({ other, ip }) => {
          const r = await query(t.server, other, addressType(ip), { tcp: true, timeoutMs: t.timeoutMs });
          if (r.answers.some((a) => a.data === ip)) sharedIps.add(ip);
        }),
      );
    }
    await afterRead?.(attempt);
    const prereqs: Prerequisite[] = [
      ownGuard,
      siblings.length > 0
        ? {
            kind: "rrsetEquals",
            name: p.service,
            records: siblings.map((s) => ({ type: "PTR" as const, data: s })),
          }
        : { kind: "rrsetAbsent", name: p.service, type: "PTR" },
    ];
    const updates: UpdateOp[] = [
      { kind: "deleteRR", name: p.service, type: "PTR", data: p.instance },
      ...p.ips
        .filter((ip) => !sharedIps.has(ip))
        .map((ip): UpdateOp => ({ kind: "deleteRR", name: p.service, type: addressType(ip), data: ip })),
      ...p.srvs.map((s): UpdateOp => ({ kind: "deleteRR", name: s.name, type: "SRV", data: s.data })),
      { kind: "deleteName", name: p.instance },
    ];
    try {
      await sendUpdate(t.server, t.key, t.zone, prereqs, updates, {
        timeoutMs: t.timeoutMs,
        what: "deregistration",
      });
      result.removed = true;
      result.addressKept = [...sharedIps];
      return result;
    } catch (e) {
      if (
        !(
          isDnsError(e) &&
          (e.dns.rcode === "NXRRSET" || e.dns.rcode === "NXDOMAIN" || e.dns.rcode === "YXRRSET")
        )
      )
        throw e;
      // Either our own records are gone / changed (stop), or the service's instance list changed (read again).
      const own = await query(t.server, p.instance, "TXT", { tcp: true, timeoutMs: t.timeoutMs });
      const txtNow = own.answers.find((a) => a.type === 16)?.data as string[] | undefined;
      if (!txtNow || (p.txt && txtNow.join("\u0000") !== p.txt.join("\u0000"))) return result;
    }
  }
  return result;
}

/** The service's live instance names (its PTR RRset), read from the authoritative server. */
export async function liveInstances(t: UpdateTarget, service: string): Promise<string[]> {
  const r = await query(t.server, service, "PTR", { tcp: true, timeoutMs: t.timeoutMs });
  return r.answers.filter((a) => a.type === 12).map((a) => a.data as string);
}
