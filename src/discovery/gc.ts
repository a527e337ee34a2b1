import { transferZone } from "./client.js";
import { dnsMetrics } from "./metrics.js";
import { parseInstanceTxt } from "./records.js";
import {
  type DeregisterResult,
  deregisterInstance,
  type PublishedInstance,
  type UpdateTarget,
} from "./update.js";
import { TYPE } from "./wire.js";

export interface LeaseInfo extends PublishedInstance {
  cuid: string;
  expires: string;
}

/** Every instance published in the zone, read by a signed zone transfer. */
export async function listInstances(t: UpdateTarget): Promise<LeaseInfo[]> {
  const records = await transferZone(t.server, t.key, t.zone, { timeoutMs: t.timeoutMs ?? 10_000 });
  const out: LeaseInfo[] = [];
  for (const r of records) {
    if (r.type !== TYPE.TXT) continue;
    const txt = r.data as string[];
    const parsed = parseInstanceTxt(txt);
    if (!parsed?.expires) continue;
    const dot = r.name.indexOf(".");
    out.push({
      cuid: parsed.cuid,
      expires: parsed.expires,
      instance: r.name,
      service: r.name.slice(dot + 1),
      ips: records
        .filter((a) => a.name === r.name && (a.type === TYPE.A || a.type === TYPE.AAAA))
        .map((a) => a.data as string),
      srvs: records
        .filter((s) => s.type === TYPE.SRV && (s.data as { target: string }).target === r.name)
        .map((s) => ({ name: s.name, data: s.data as LeaseInfo["srvs"][number]["data"] })),
      txt,
    });
  }
  return out;
}

export interface GcOutcome {
  instance: string;
  cuid: string;
  expires: string;
  result: DeregisterResult | "dry-run";
}

/**
 * Removes instances whose lease (`expires=`) passed more than graceMs ago, with the same prerequisites as a
 * deregistration plus "the TXT is still exactly what we read": an instance that renewed meanwhile is kept.
 */
export async function collectGarbage(
  t: UpdateTarget,
  opts: { graceMs?: number; now?: number; dryRun?: boolean } = {},
): Promise<GcOutcome[]> {
  const now = opts.now ?? Date.now();
  const out: GcOutcome[] = [];
  for (const inst of await listInstances(t)) {
    const exp = Date.parse(inst.expires);
    if (!(Number.isFinite(exp) && exp + (opts.graceMs ?? 0) < now)) continue;
    if (opts.dryRun) {
      out.push({ instance: inst.instance, cuid: inst.cuid, expires: inst.expires, result: "dry-run" });
      continue;
    }
    const result = await deregisterInstance(t, inst);
    dnsMetrics.updates.inc({ op: "gc", result: result.removed ? "ok" : "kept" });
    if (result.removed) dnsMetrics.gcRemoved.inc();
    out.push({ instance: inst.instance, cuid: inst.cuid, expires: inst.expires, result });
  }
  return out;
}
