import type { Command } from "commander";
import { DISCOVERY_SETTINGS, queryServer } from "../config/ddns.js";
import { addSettingOptions, resolveSettings, type SettingDef } from "../config/settings.js";
import { parseHostPort } from "../config/units.js";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { inZone } from "../discovery/records.js";
import { isLoopbackHost, loadCredentials, RelayPolicy } from "../discovery/relay-policy.js";
import { ServiceResolver } from "../discovery/resolve.js";
import { Socks5Proxy } from "../discovery/socks5.js";
import { createLogger } from "../observe/logger.js";

/** The listen address; proxy and ambassador have different defaults so both can run side by side. */
export const listenSetting = (def: string): SettingDef => ({
  key: "listen",
  kind: "string",
  arg: "HOST:PORT",
  default: def,
  description: "address to accept connections on",
});

const PROXY_SETTINGS: SettingDef[] = [
  {
    key: "allow",
    kind: "list",
    arg: "HOST:PORT|CIDR",
    description:
      "also relay to this destination, repeatable: HOST:PORT, HOST:*, IP:PORT or a CIDR for IP destinations (default: only names under --zone)",
  },
  {
    key: "authFile",
    kind: "string",
    arg: "FILE",
    description:
      "require username/password (RFC 1929) from clients; FILE holds user:password lines (or set IKONTAINER_PROXY_AUTH=user:password). Required when --listen is not loopback",
  },
];

export const RELAY_SETTINGS: SettingDef[] = [
  {
    key: "connectTimeout",
    kind: "duration",
    arg: "DURATION",
    default: 3000,
    description: "give up on one upstream address after this long and try the next",
  },
  {
    key: "drain",
    kind: "duration",
    arg: "DURATION",
    default: 10_000,
    description: "on SIGTERM, how long open connections may finish",
  },
  {
    key: "logLevel",
    kind: "enum",
    choices: ["trace", "debug", "info", "warn", "error", "silent"],
    default: "info",
    description: "log level (JSON on stderr; one line per connection at info)",
  },
];

/** Waits for SIGTERM/SIGINT, then closes the server letting connections drain. */
export function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => void close().finally(resolve);
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}

export function registerProxy(program: Command): void {
  const defs = [...DISCOVERY_SETTINGS, ...PROXY_SETTINGS, listenSetting("127.0.0.1:1080"), ...RELAY_SETTINGS];
  const cmd = program
    .command("proxy")
    .description(
      "SOCKS5 proxy (RFC 1928, remote name resolution): names under --zone go to a live instance found by SRV; other destinations only when --allow'ed; optional username/password (RFC 1929); each connection is logged with the peer instance's CUID",
    )
    .addHelpText(
      "after",
      "\nExample:\n  ikontainer proxy --listen 127.0.0.1:1080 --dns-server 10.0.0.53 --zone svc.example.org\n" +
        "  curl -x socks5h://127.0.0.1:1080 http://web.default.svc.example.org/\n" +
        "A service name at port P uses SRV _<service of P>._tcp.<name> (80 → _http._tcp); an SRV name gives the port itself.",
    );
  addSettingOptions(cmd, defs).action(async (flags: Record<string, unknown>) => {
    const s = resolveSettings(defs, flags);
    const listen = parseHostPort(s.listen as string, "--listen");
    const log = createLogger(s.logLevel as string);
    const resolver = new ServiceResolver({
      server: queryServer(s),
      zone: s.zone as string | undefined,
      timeoutMs: s.dnsTimeout as number,
    });
    const zone = s.zone as string | undefined;
    const policy = new RelayPolicy((s.allow as string[] | undefined) ?? [], (n) =>
      zone ? inZone(n, zone) : n.startsWith("_"),
    );
    const credentials = loadCredentials(s.authFile as string | undefined);
    if (!credentials && !isLoopbackHost(listen.host))
      throw ERR_INVALID_SETTING(
        `invalid --listen: ${listen.host} is reachable from other hosts; require authentication with --auth-file FILE (user:password lines) or IKONTAINER_PROXY_AUTH=user:password`,
      );
    const proxy = new Socks5Proxy(resolver, log, {
      connectTimeoutMs: s.connectTimeout as number,
      policy,
      credentials,
    });
    const addr = await proxy.listen(listen.host, listen.port);
    log.info(
      {
        listen: `${addr.host}:${addr.port}`,
        zone,
        allow: s.allow ?? [],
        auth: credentials ? "username/password" : "none",
      },
      "SOCKS5 proxy listening",
    );
    await untilSignal(() => proxy.close(s.drain as number));
  });
}
