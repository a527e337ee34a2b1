import { readFileSync } from "node:fs";
import { BlockList, isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { fqdn } from "./wire.js";

/**
 * Who the SOCKS5 proxy may relay to. By default only names under the zone (the registry's instances); other
 * destinations need an `--allow` entry: `host:port`, `host:*`, `IP:port`, or a CIDR (`10.0.0.0/8`, any port;
 * matched against IP-literal destinations only, since other names are not resolved before the check).
 * Without this the proxy was an open relay into the host's loopback services (e.g. 127.0.0.1:6379).
 */

type Rule = { host: string; port: number | "*" } | { cidr: BlockList; text: string };

export class RelayPolicy {
  private readonly rules: Rule[];
  private readonly cidrs = new BlockList();
  private hasCidr = false;

  constructor(
    allow: readonly string[],
    private readonly ours: (name: string) => boolean,
  ) {
    this.rules = allow.map((a) => this.parse(a));
  }

  private parse(entry: string): Rule {
    const bad = () =>
      ERR_INVALID_SETTING(
        `invalid --allow: expected HOST:PORT, HOST:*, or a CIDR such as 10.0.0.0/8 (got "${entry}")`,
      );
    const cidr = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(entry);
    if (cidr) {
      const v = isIP(cidr[1]!);
      const bits = Number(cidr[2]);
      if (v === 0 || bits > (v === 4 ? 32 : 128)) throw bad();
      this.cidrs.addSubnet(cidr[1]!, bits, v === 4 ? "ipv4" : "ipv6");
      this.hasCidr = true;
      return { cidr: this.cidrs, text: entry };
    }
    const hp = /^\[?([^\]]+?)\]?:(\d{1,5}|\*)$/.exec(entry);
    if (!hp) throw bad();
    const port = hp[2] === "*" ? "*" : Number(hp[2]);
    if (port !== "*" && (port < 1 || port > 65535)) throw bad();
    return { host: fqdn(hp[1]!), port };
  }

  /** True when a CONNECT to host:port is allowed. */
  allows(host: string, port: number): boolean {
    const name = fqdn(host);
    if (!isIP(name) && this.ours(name)) return true;
    for (const r of this.rules)
      if ("host" in r && r.host === name && (r.port === "*" || r.port === port)) return true;
    const v = isIP(name);
    return v !== 0 && this.hasCidr && this.cidrs.check(name, v === 4 ? "ipv4" : "ipv6");
  }
}

/** Is this address one of this machine's (loopback or an interface address)? */
export function isLocalAddress(address: string): boolean {
  const a = address.replace(/^::ffff:/, "");
  if (a.startsWith("127.") || a === "::1" || a === "0.0.0.0" || a === "::") return true;
  return Object.values(networkInterfaces()).some((list) => (list ?? []).some((i) => i.address === a));
}

/** Loopback listen addresses are reachable only from this host (or pod). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host.startsWith("127.") || host === "::1";
}

export interface Credentials {
  users: Map<string, string>;
}

/**
 * RFC 1929 users, from `--auth-file` (lines `user:password`) or `IKONTAINER_PROXY_AUTH` (`user:password`);
 * never from a flag, so no password shows in `ps`.
 */
export function loadCredentials(
  authFile: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Credentials | undefined {
  const users = new Map<string, string>();
  const add = (line: string, where: string) => {
    const at = line.indexOf(":");
    if (at <= 0 || at === line.length - 1)
      throw ERR_INVALID_SETTING(`invalid ${where}: expected user:password lines`);
    const user = line.slice(0, at);
    const pass = line.slice(at + 1);
    if (Buffer.byteLength(user) > 255 || Buffer.byteLength(pass) > 255)
      throw ERR_INVALID_SETTING(`invalid ${where}: user and password are at most 255 bytes (RFC 1929)`);
    users.set(user, pass);
  };
  if (authFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(authFile, "utf8");
    } catch (e) {
      throw ERR_INVALID_SETTING(
        `invalid --auth-file: cannot read ${authFile}: ${(e as NodeJS.ErrnoException).code}`,
      );
    }
    for (const line of text.split("\n").map((l) => l.replace(/\r$/, "")))
      if (line.trim() !== "" && !line.startsWith("#")) add(line, "--auth-file");
    if (users.size === 0)
      throw ERR_INVALID_SETTING(`invalid --auth-file: ${authFile} holds no user:password`);
  } else if (env.IKONTAINER_PROXY_AUTH) add(env.IKONTAINER_PROXY_AUTH, "IKONTAINER_PROXY_AUTH");
  return users.size > 0 ? { users } : undefined;
}
