import { isIP } from "node:net";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { fqdn } from "./wire.js";

/**
 * The names and records one instance publishes (see docs/dns.md):
 *   <cuid>.<svc>.<ns>.<zone>             A/AAAA advertised address, TXT cuid= svc= pod= node= started= expires= ports=
 *   <svc>.<ns>.<zone>                    A/AAAA one per live address, PTR -> each live instance name (DNS-SD style browse)
 *   _<port>._<proto>.<svc>.<ns>.<zone>   SRV 0 10 <port> <instance name>
 *   <reversed ip>.in-addr.arpa / ip6.arpa PTR -> the instance that holds the address now
 */

export interface AdvertisedPort {
  name: string;
  port: number;
  proto: "tcp" | "udp";
}

export interface InstanceIdentity {
  cuid: string;
  /** One DNS label: the service. */
  svcLabel: string;
  /** One DNS label: the namespace. */
  namespace: string;
  zone: string;
  ip: string;
  ports: AdvertisedPort[];
  pod?: string | undefined;
  node?: string | undefined;
  started: string;
}

/** A DNS label from a free-form name: lowercase letters, digits and dashes, at most 63. */
export function toLabel(raw: string, setting: string): string {
  const label = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  if (!label) throw ERR_INVALID_SETTING(`invalid ${setting}: "${raw}" gives no usable DNS label`);
  return label;
}

/** The service label from the agent's svc (`web.default.cluster.local` → `web`). */
export function svcLabelOf(svc: string): string {
  return toLabel(svc.split(".")[0] ?? svc, "--svc");
}

/** `NAME:PORT/PROTO` (PROTO defaults to tcp). */
export function parsePortSpec(spec: string, setting = "--port"): AdvertisedPort {
  const m = /^([A-Za-z0-9][A-Za-z0-9-]{0,14}):(\d{1,5})(?:\/(tcp|udp))?$/i.exec(spec.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !(port > 0 && port < 65536))
    throw ERR_INVALID_SETTING(
      `invalid ${setting}: expected NAME:PORT/PROTO such as http:8080/tcp (got "${spec}"); NAME is a service name of up to 15 characters`,
    );
  return { name: m[1]!.toLowerCase(), port, proto: (m[3]?.toLowerCase() ?? "tcp") as "tcp" | "udp" };
}

export const serviceName = (i: Pick<InstanceIdentity, "svcLabel" | "namespace" | "zone">): string =>
  fqdn(`${i.svcLabel}.${i.namespace}.${i.zone}`);
export const instanceName = (i: Pick<InstanceIdentity, "cuid" | "svcLabel" | "namespace" | "zone">): string =>
  fqdn(`${i.cuid}.${serviceName(i)}`);
export const srvName = (p: AdvertisedPort, service: string): string =>
  fqdn(`_${p.name}._${p.proto}.${service}`);

export const addressType = (ip: string): "A" | "AAAA" => (isIP(ip) === 6 ? "AAAA" : "A");

/** The reverse-DNS name of an address (in-addr.arpa or ip6.arpa). */
export function reverseName(ip: string): string {
  if (isIP(ip) === 4) return `${ip.split(".").reverse().join(".")}.in-addr.arpa`;
  if (isIP(ip) !== 6) throw ERR_INVALID_SETTING(`invalid --advertise-ip: "${ip}" is not an IP address`);
  // Expand :: and zero-pad every group, then reverse the nibbles.
  const [head, tail] = ip.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const nibbles = groups.map((g) => g.padStart(4, "0")).join("");
  return `${nibbles.split("").reverse().join(".")}.ip6.arpa`;
}

export const inZone = (name: string, zone: string): boolean => {
  const n = fqdn(name);
  const z = fqdn(zone);
  return n === z || n.endsWith(`.${z}`);
};

export interface InstanceTxt {
  cuid: string;
  svc?: string;
  pod?: string;
  node?: string;
  started?: string;
  expires?: string;
  ports?: AdvertisedPort[];
}

export function instanceTxt(i: InstanceIdentity, expires: Date): string[] {
  const out = [`cuid=${i.cuid}`, `svc=${i.svcLabel}.${i.namespace}`];
  if (i.pod) out.push(`pod=${i.pod}`);
  if (i.node) out.push(`node=${i.node}`);
  out.push(`started=${i.started}`, `expires=${expires.toISOString()}`);
  if (i.ports.length > 0) out.push(`ports=${i.ports.map((p) => `${p.name}:${p.port}/${p.proto}`).join(",")}`);
  return out;
}

/** Reads an instance TXT record back; undefined when it is not one of ours. */
export function parseInstanceTxt(strings: string[]): InstanceTxt | undefined {
  const kv = new Map<string, string>();
  for (const s of strings) {
    const eq = s.indexOf("=");
    if (eq > 0) kv.set(s.slice(0, eq), s.slice(eq + 1));
  }
  const cuid = kv.get("cuid");
  if (!cuid) return undefined;
  const out: InstanceTxt = { cuid };
  for (const k of ["svc", "pod", "node", "started", "expires"] as const) {
    const v = kv.get(k);
    if (v !== undefined) out[k] = v;
  }
  const ports = kv.get("ports");
  if (ports)
    out.ports = ports
      .split(",")
      .filter((p) => p !== "")
      .flatMap((p) => {
        try {
          return [parsePortSpec(p)];
        } catch {
          return [];
        }
      });
  return out;
}
