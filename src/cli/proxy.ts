import type { Command } from "commander";
import { DISCOVERY_SETTINGS, queryServer } from "../config/ddns.js";
import { addSettingOptions, resolveSettings, type SettingDef } from "../config/settings.js";
import { parseHostPort } from "../config/units.js";
import { ServiceResolver } from "../discovery/resolve.js";
import { Socks5Proxy } from "../discovery/socks5.js";
import { createLogger } from "../observe/logger.js";

export const RELAY_SETTINGS: SettingDef[] = [
  {
    key: "listen",
    kind: "string",
    arg: "HOST:PORT",
    default: "127.0.0.1:1080",
    description: "address to accept connections on",
  },
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
  const defs = [...DISCOVERY_SETTINGS, ...RELAY_SETTINGS];
  const cmd = program
    .command("proxy")
    .description(
      "SOCKS5 proxy (RFC 1928, remote name resolution): names under --zone go to a live instance found by SRV, others through ordinary DNS; each connection is logged with the peer instance's CUID",
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
    const proxy = new Socks5Proxy(resolver, log, s.connectTimeout as number);
    const addr = await proxy.listen(listen.host, listen.port);
    log.info({ listen: `${addr.host}:${addr.port}`, zone: s.zone }, "SOCKS5 proxy listening");
    await untilSignal(() => proxy.close(s.drain as number));
  });
}
