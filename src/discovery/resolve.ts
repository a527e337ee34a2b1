import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { connect, isIP, type Socket } from "node:net";
import { ERR_DNS_NOT_FOUND } from "../core/errors.js";
import { type Answer, type DnsServer, query } from "./client.js";
import { type AdvertisedPort, inZone, parseInstanceTxt } from "./records.js";
import { fqdn, TYPE } from "./wire.js";

/** One live instance as DNS describes it. */
export interface InstanceInfo {
  instance: string;
  addresses: string[];
  cuid?: string;
  svc?: string;
  pod?: string;
  node?: string;
  started?: string;
  expires?: string;
  ports: AdvertisedPort[];
}

/** A place to connect to, with the instance behind it when the name was one of ours. */
export interface Endpoint {
  host: string;
  port: number;
  instance?: string;
  cuid?: string;
  pod?: string;
  /** How the endpoint was found: srv, instances (the service's PTR list), a (plain records in the zone), system. */
  via: "srv" | "instances" | "a" | "system";
}

let services: Map<number, string> | undefined;
/** The service name of a well-known TCP port, from /etc/services (80 → http). */
export function serviceForPort(port: number): string | undefined {
  if (!services) {
    services = new Map([
      [80, "http"],
      [443, "https"],
    ]);
    try {
      for (const line of readFileSync("/etc/services", "utf8").split("\n")) {
        const m = /^([a-z0-9-]+)\s+(\d+)\/tcp/i.exec(line);
        if (m && !services.has(Number(m[2]))) services.set(Number(m[2]), m[1]!.toLowerCase());
      }
    } catch {
      // the two defaults are enough
    }
  }
  return services.get(port);
}

interface CacheEntry<T> {
  value: T;
  until: number;
}

/**
 * Client-side discovery (Transparent Containers): names under the zone resolve through SRV and the instance
 * records; other names through the system resolver. Answers are cached for their TTL, so every new connection
 * sees a moved service as soon as DNS does.
 */
export class ServiceResolver {
  private cache = new Map<string, CacheEntry<unknown>>();

  constructor(
    private readonly opts: {
      server: DnsServer;
      zone?: string | undefined;
      timeoutMs?: number;
      /** Upper bound on cached answers (ms), whatever the TTL says. */
      maxCacheMs?: number;
    },
  ) {}

  invalidate(): void {
    this.cache.clear();
  }

  private async cached<T>(key: string, load: () => Promise<{ value: T; ttl: number }>): Promise<T> {
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.value as T;
    const { value, ttl } = await load();
    const ms = Math.min(ttl * 1000, this.opts.maxCacheMs ?? 60_000);
    if (ms > 0) this.cache.set(key, { value, until: Date.now() + ms });
    else this.cache.delete(key);
    return value;
  }

  private async records(name: string, type: "A" | "AAAA" | "TXT" | "SRV" | "PTR"): Promise<Answer[]> {
    return this.cached(`${type} ${fqdn(name)}`, async () => {
      const r = await query(this.opts.server, name, type, { timeoutMs: this.opts.timeoutMs ?? 3000 });
      const answers = r.answers.filter((a) => a.type === TYPE[type]);
      const ttl = answers.length > 0 ? Math.min(...answers.map((a) => a.ttl)) : 1;
      return { value: answers, ttl };
    });
  }

  /** Address and TXT facts of one instance name. */
  async instance(name: string): Promise<InstanceInfo> {
    const [a, aaaa, txt] = await Promise.all([
      this.records(name, "A"),
      this.records(name, "AAAA"),
      this.records(name, "TXT"),
    ]);
    const info: InstanceInfo = {
      instance: fqdn(name),
      addresses: [...a, ...aaaa].map((r) => r.data as string),
      ports: [],
    };
    for (const t of txt) {
      const parsed = parseInstanceTxt(t.data as string[]);
      if (parsed) {
        Object.assign(info, parsed);
        info.ports = parsed.ports ?? [];
      }
    }
    return info;
  }

  /** The live instances of a service name (its PTR list) or of an SRV name (its targets). */
  async instances(name: string): Promise<InstanceInfo[]> {
    const n = fqdn(name);
    const targets = n.startsWith("_")
      ? (await this.records(n, "SRV")).map((r) => (r.data as { target: string }).target)
      : (await this.records(n, "PTR")).map((r) => r.data as string);
    const unique = [...new Set(targets)];
    return Promise.all(unique.map((t) => this.instance(t)));
  }

  private async srvEndpoints(name: string): Promise<Endpoint[]> {
    const srv = await this.records(name, "SRV");
    const sorted = [...srv].sort(
      (x, y) => (x.data as { priority: number }).priority - (y.data as { priority: number }).priority,
    );
    const out: Endpoint[] = [];
    for (const r of sorted) {
      const d = r.data as { port: number; target: string };
      const info = await this.instance(d.target);
      for (const host of info.addresses)
        out.push({
          host,
          port: d.port,
          instance: info.instance,
          ...(info.cuid ? { cuid: info.cuid } : {}),
          ...(info.pod ? { pod: info.pod } : {}),
          via: "srv",
        });
    }
    return out;
  }

  /**
   * Where a connection to `name:port` should go. Under the zone: an SRV name gives address and port; a service
   * name uses SRV `_<service of port>._tcp.<name>` (80 → _http._tcp) when published, else its instances at the
   * requested port, else its plain A/AAAA records. Outside the zone: the system resolver.
   */
  async endpoints(name: string, port: number): Promise<Endpoint[]> {
    const n = fqdn(name);
    if (isIP(n)) return [{ host: n, port, via: "system" }];
    const ours = this.opts.zone ? inZone(n, this.opts.zone) : n.startsWith("_");
    if (!ours) {
      const all = await lookup(n, { all: true });
      return all.map((a) => ({ host: a.address, port, via: "system" as const }));
    }
    if (n.startsWith("_")) return this.srvEndpoints(n);
    const portName = serviceForPort(port);
    const candidates = [portName, `p${port}`].filter((x): x is string => x !== undefined);
    for (const c of candidates) {
      const viaSrv = await this.srvEndpoints(`_${c}._tcp.${n}`);
      if (viaSrv.length > 0) return viaSrv;
    }
    const insts = await this.instances(n);
    if (insts.length > 0) {
      // An instance that publishes exactly one TCP port gets connections there; others at the requested port.
      return insts.flatMap((i) => {
        const tcp = i.ports.filter((p) => p.proto === "tcp");
        const target = tcp.find((p) => p.port === port) ?? (tcp.length === 1 ? tcp[0] : undefined);
        return i.addresses.map((host) => ({
          host,
          port: target?.port ?? port,
          instance: i.instance,
          ...(i.cuid ? { cuid: i.cuid } : {}),
          ...(i.pod ? { pod: i.pod } : {}),
          via: "instances" as const,
        }));
      });
    }
    const plain = [...(await this.records(n, "A")), ...(await this.records(n, "AAAA"))];
    return plain.map((r) => ({ host: r.data as string, port, via: "a" as const }));
  }

  /**
   * Connects to one of the name's endpoints (random order); a refused or unreachable endpoint makes it try the
   * next, and when all fail it resolves again once with the cache dropped (the service may just have moved).
   */
  async connect(
    name: string,
    port: number,
    opts: { connectTimeoutMs?: number } = {},
  ): Promise<{ socket: Socket; endpoint: Endpoint }> {
    let lastError: Error | undefined;
    for (let round = 0; round < 2; round++) {
      if (round === 1) this.invalidate();
      const eps = shuffle(await this.endpoints(name, port));
      if (eps.length === 0) continue;
      for (const ep of eps) {
        try {
          const socket = await dial(ep.host, ep.port, opts.connectTimeoutMs ?? 3000);
          return { socket, endpoint: ep };
        } catch (e) {
          lastError = e as Error;
        }
      }
    }
    if (lastError) throw lastError;
    throw ERR_DNS_NOT_FOUND(`no live instance of ${fqdn(name)} (port ${port}) in DNS`);
  }
}

function shuffle<T>(a: T[]): T[] {
  const out = [...a];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export function dial(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect to ${host}:${port} timed out`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    const onError = (e: Error) => {
      clearTimeout(t);
      reject(e);
    };
    s.once("error", onError);
    s.once("connect", () => {
      clearTimeout(t);
      s.off("error", onError);
      resolve(s);
    });
  });
}
