import type { Command } from "commander";
import { DISCOVERY_SETTINGS, queryServer } from "../config/ddns.js";
import { addSettingOptions, resolveSettings, type SettingDef } from "../config/settings.js";
import { parseHostPort } from "../config/units.js";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { Ambassador } from "../discovery/ambassador.js";
import { ServiceResolver } from "../discovery/resolve.js";
import { createLogger } from "../observe/logger.js";
import { listenSetting, RELAY_SETTINGS, untilSignal } from "./proxy.js";

const AMBASSADOR_SETTINGS: SettingDef[] = [
  {
    key: "targetPort",
    kind: "port",
    arg: "PORT",
    description: "port for a service name that has no SRV record for it",
  },
];

export function registerAmbassador(program: Command): void {
  // 1081, not the proxy's 1080: a proxy and an ambassador on one host must not collide by default
  const defs = [
    ...DISCOVERY_SETTINGS,
    ...AMBASSADOR_SETTINGS,
    listenSetting("127.0.0.1:1081"),
    ...RELAY_SETTINGS,
  ];
  const cmd = program
    .command("ambassador")
    .description(
      "plain TCP forwarder to a service that follows it when it moves (every new connection re-resolves SRV), for clients that speak no SOCKS",
    )
    // A plain option, not a setting: IKONTAINER_SERVICE already means the agent's own service name.
    .option("--service <NAME>", "SRV name (_http._tcp.web.ns.zone) or service name to forward to")
    .addHelpText(
      "after",
      "\nExample:\n  ikontainer ambassador --listen 127.0.0.1:8080 --service _http._tcp.web.default.svc.example.org --dns-server 10.0.0.53",
    );
  addSettingOptions(cmd, defs).action(async (flags: Record<string, unknown>) => {
    const s = resolveSettings(defs, flags);
    const service = flags.service as string | undefined;
    if (!service) throw ERR_INVALID_SETTING("invalid --service: give the SRV or service name to forward to");
    const targetPort = (s.targetPort as number | undefined) ?? 0;
    if (!service.startsWith("_") && targetPort === 0)
      throw ERR_INVALID_SETTING(
        "invalid --target-port: a service name without _<port>._<proto> needs --target-port (or pass the SRV name)",
      );
    const listen = parseHostPort(s.listen as string, "--listen");
    const log = createLogger(s.logLevel as string);
    const resolver = new ServiceResolver({
      server: queryServer(s),
      zone: s.zone as string | undefined,
      timeoutMs: s.dnsTimeout as number,
    });
    const amb = new Ambassador(resolver, service, targetPort, log, s.connectTimeout as number);
    const addr = await amb.listen(listen.host, listen.port);
    log.info({ listen: `${addr.host}:${addr.port}`, service }, "ambassador listening");
    await untilSignal(() => amb.close(s.drain as number));
  });
}
