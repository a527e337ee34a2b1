import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import type { DnsServer } from "../discovery/client.js";
import { type AdvertisedPort, parsePortSpec, toLabel } from "../discovery/records.js";
import { parseTsigSpec, readTsigFile, type TsigKey } from "../discovery/tsig.js";
import type { SettingDef } from "./settings.js";
import { parseHostPort } from "./units.js";

/** Settings that say where and how to publish an instance (run, exec, `ddns register`, `ddns gc`). */
export const DDNS_SETTINGS: SettingDef[] = [
  {
    key: "ddnsServer",
    kind: "string",
    arg: "HOST:PORT",
    description:
      "authoritative DNS server for RFC 2136 updates (port 53 if left out); enables DNS registration",
  },
  { key: "zone", kind: "string", arg: "ZONE", description: "forward zone that holds the instance records" },
  {
    key: "reverseZone",
    kind: "string",
    arg: "ZONE",
    description: "reverse zone for PTR records, e.g. 10.in-addr.arpa (no PTR when left out)",
  },
  {
    key: "tsig",
    kind: "string",
    arg: "NAME:ALG:BASE64",
    description:
      "TSIG key for signed updates (alg hmac-sha256 by default); prefer --tsig-file or the env var",
  },
  {
    key: "tsigFile",
    kind: "string",
    arg: "FILE",
    description: "file with the TSIG key: NAME:ALG:BASE64, a BIND key block, or `keymgr -t` output",
  },
  {
    key: "advertiseIp",
    kind: "string",
    arg: "IP",
    description:
      "address to publish (default: POD_IP from the Downward API, else the first non-loopback address)",
  },
  {
    key: "port",
    kind: "list",
    arg: "NAME:PORT/PROTO",
    description:
      "port to publish as SRV _NAME._PROTO.<svc>.<namespace>.<zone>, repeatable (e.g. http:8080/tcp)",
  },
  {
    key: "registerWhenReady",
    kind: "bool",
    description:
      "publish only once every advertised TCP port accepts connections at the advertised address (the app is up)",
  },
  {
    key: "dnsNamespace",
    kind: "string",
    arg: "NAME",
    description: "namespace label in DNS names (default: POD_NAMESPACE, else default)",
  },
  {
    key: "dnsTtl",
    kind: "duration",
    arg: "DURATION",
    default: 5000,
    description: "TTL of published records",
  },
  {
    key: "lease",
    kind: "duration",
    arg: "DURATION",
    default: 300_000,
    description: "how long records live without renewal before `ddns gc` may remove them",
  },
  {
    key: "renewInterval",
    kind: "duration",
    arg: "DURATION",
    description: "how often the lease is renewed (default: a third of --lease)",
  },
  {
    key: "dnsTimeout",
    kind: "duration",
    arg: "DURATION",
    default: 3000,
    description: "timeout of one DNS exchange",
  },
];

/** `exec` only: the wrapper holds the child's SIGTERM until the instance has left DNS and caches expired. */
export const STOP_DELAY_SETTING: SettingDef = {
  key: "stopDelay",
  kind: "duration",
  arg: "DURATION",
  description:
    "with --ddns-server: on SIGTERM leave DNS first, then wait this long before passing SIGTERM to the child, so " +
    "answers cached for --dns-ttl expire while the app still accepts connections; a second SIGTERM passes at " +
    "once (default: --dns-ttl + 1s; 0 passes it at once)",
};

/** Settings of the discovery commands (resolve, proxy, ambassador). */
export const DISCOVERY_SETTINGS: SettingDef[] = [
  {
    key: "dnsServer",
    kind: "string",
    arg: "HOST:PORT",
    description:
      "DNS server to query (default: --ddns-server, else the first nameserver in /etc/resolv.conf)",
  },
  {
    key: "ddnsServer",
    kind: "string",
    arg: "HOST:PORT",
    description: "the registration server; used for queries when --dns-server is not given",
  },
  {
    key: "zone",
    kind: "string",
    arg: "ZONE",
    description: "names under this zone are resolved through the instance records (SRV, TXT)",
  },
  {
    key: "dnsTimeout",
    kind: "duration",
    arg: "DURATION",
    default: 3000,
    description: "timeout of one DNS query",
  },
];

export function parseServer(value: string, setting: string): DnsServer {
  return parseHostPort(value, setting, 53);
}

export function loadTsigKey(s: Record<string, unknown>): TsigKey | undefined {
  if (s.tsig !== undefined && s.tsigFile !== undefined)
    throw ERR_INVALID_SETTING("invalid --tsig: give either --tsig or --tsig-file, not both");
  if (s.tsigFile !== undefined) return readTsigFile(s.tsigFile as string);
  if (s.tsig !== undefined) return parseTsigSpec(s.tsig as string);
  return undefined;
}

export interface DdnsConfig {
  server: DnsServer;
  zone: string;
  reverseZone: string | undefined;
  key: TsigKey;
  ttl: number;
  leaseMs: number;
  renewMs: number;
  timeoutMs: number;
}

/** The update target from resolved settings; undefined when DNS registration is not configured. */
export function ddnsConfigFrom(s: Record<string, unknown>): DdnsConfig | undefined {
  const server = s.ddnsServer as string | undefined;
  if (server === undefined) return undefined;
  const zone = s.zone as string | undefined;
  if (!zone) throw ERR_INVALID_SETTING("invalid --zone: --ddns-server needs --zone (the zone to update)");
  const key = loadTsigKey(s);
  if (!key)
    throw ERR_INVALID_SETTING(
      "invalid --tsig: --ddns-server needs a TSIG key (--tsig NAME:ALG:BASE64, --tsig-file FILE or IKONTAINER_TSIG)",
    );
  const leaseMs = s.lease as number;
  if (leaseMs < 1000) throw ERR_INVALID_SETTING("invalid --lease: must be at least 1s");
  const renewMs = (s.renewInterval as number | undefined) ?? Math.max(500, Math.floor(leaseMs / 3));
  if (renewMs >= leaseMs)
    throw ERR_INVALID_SETTING(`invalid --renew-interval: must be shorter than --lease (${leaseMs} ms)`);
  return {
    server: parseServer(server, "--ddns-server"),
    zone: zone.replace(/\.$/, "").toLowerCase(),
    reverseZone: (s.reverseZone as string | undefined)?.replace(/\.$/, "").toLowerCase(),
    key,
    ttl: s.dnsTtl as number,
    leaseMs,
    renewMs,
    timeoutMs: s.dnsTimeout as number,
  };
}

/** The advertised address: --advertise-ip, else POD_IP, else the first non-internal address of this host. */
export function advertisedIp(s: Record<string, unknown>, env: NodeJS.ProcessEnv): string {
  const explicit = (s.advertiseIp as string | undefined) ?? env.POD_IP;
  if (explicit !== undefined && explicit !== "") {
    if (isIP(explicit) === 0)
      throw ERR_INVALID_SETTING(`invalid --advertise-ip: "${explicit}" is not an IPv4 or IPv6 address`);
    return explicit;
  }
  const all = Object.values(networkInterfaces()).flatMap((l) => l ?? []);
  const pick = all.find((a) => !a.internal && a.family === "IPv4") ?? all.find((a) => !a.internal);
  if (!pick)
    throw ERR_INVALID_SETTING(
      "invalid --advertise-ip: no address to publish; pass --advertise-ip or set POD_IP",
    );
  return pick.address;
}

export function advertisedPorts(s: Record<string, unknown>): AdvertisedPort[] {
  // Kubernetes sets IKONTAINER_PORT=tcp://10.0.0.1:80 when a Service named "ikontainer" exists (service links):
  // that is never a port spec of ours, so it is skipped rather than failing the agent's start.
  const specs = ((s.port as string[] | undefined) ?? []).filter((p) => !/^(tcp|udp|sctp):\/\//i.test(p));
  const ports = specs.map((p) => parsePortSpec(p));
  const seen = new Set<string>();
  for (const p of ports) {
    const k = `${p.name}/${p.proto}`;
    if (seen.has(k)) throw ERR_INVALID_SETTING(`invalid --port: ${k} is given twice`);
    seen.add(k);
  }
  return ports;
}

export function dnsNamespace(s: Record<string, unknown>, env: NodeJS.ProcessEnv): string {
  return toLabel((s.dnsNamespace as string | undefined) ?? env.POD_NAMESPACE ?? "default", "--dns-namespace");
}

/** The server that discovery commands query. */
export function queryServer(s: Record<string, unknown>): DnsServer {
  if (s.dnsServer !== undefined) return parseServer(s.dnsServer as string, "--dns-server");
  if (s.ddnsServer !== undefined) return parseServer(s.ddnsServer as string, "--ddns-server");
  try {
    const conf = readFileSync("/etc/resolv.conf", "utf8");
    const m = /^\s*nameserver\s+(\S+)/m.exec(conf);
    if (m) return { host: m[1]!, port: 53 };
  } catch {
    // fall through
  }
  throw ERR_INVALID_SETTING("invalid --dns-server: no DNS server given and none in /etc/resolv.conf");
}
