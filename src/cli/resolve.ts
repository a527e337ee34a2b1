import type { Command } from "commander";
import { DISCOVERY_SETTINGS, queryServer } from "../config/ddns.js";
import { addSettingOptions, resolveSettings } from "../config/settings.js";
import { ERR_DNS_NOT_FOUND } from "../core/errors.js";
import { ServiceResolver } from "../discovery/resolve.js";

export function registerResolve(program: Command): void {
  const cmd = program
    .command("resolve")
    .description("list the live instances of a service or SRV name: address, port, CUID, pod, node, started")
    .argument(
      "<name>",
      "service name (web.default.svc.example.org) or SRV name (_http._tcp.web.default.svc.example.org)",
    )
    .option("--json", "one JSON object per instance")
    .addHelpText(
      "after",
      "\nExamples:\n  ikontainer resolve web.default.svc.example.org --dns-server 10.0.0.53\n" +
        "  ikontainer resolve _http._tcp.web.default.svc.example.org --json",
    );
  addSettingOptions(cmd, DISCOVERY_SETTINGS).action(async (name: string, flags: Record<string, unknown>) => {
    const s = resolveSettings(DISCOVERY_SETTINGS, flags);
    const resolver = new ServiceResolver({
      server: queryServer(s),
      zone: s.zone as string | undefined,
      timeoutMs: s.dnsTimeout as number,
    });
    const srv = name.startsWith("_");
    const instances = await resolver.instances(name);
    if (instances.length === 0) throw ERR_DNS_NOT_FOUND(`no live instances of ${name} in DNS`);
    const srvPorts = new Map<string, number>();
    if (srv)
      for (const ep of await resolver.endpoints(name, 0)) if (ep.instance) srvPorts.set(ep.instance, ep.port);
    const rows = instances.map((i) => ({
      instance: i.instance,
      address: i.addresses.join(","),
      port: srv
        ? String(srvPorts.get(i.instance) ?? "")
        : i.ports.map((p) => `${p.name}:${p.port}/${p.proto}`).join(","),
      cuid: i.cuid ?? "",
      pod: i.pod ?? "",
      node: i.node ?? "",
      started: i.started ?? "",
      expires: i.expires ?? "",
    }));
    if (flags.json) {
      for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    const cols = ["address", "port", "cuid", "pod", "node", "started", "expires"] as const;
    const width = Object.fromEntries(
      cols.map((c) => [c, Math.max(c.length, ...rows.map((r) => r[c].length))]),
    ) as Record<(typeof cols)[number], number>;
    const line = (r: Record<string, string>) =>
      cols
        .map((c) => (r[c] ?? "").padEnd(width[c]))
        .join("  ")
        .trimEnd();
    process.stdout.write(`${line(Object.fromEntries(cols.map((c) => [c, c.toUpperCase()])))}\n`);
    for (const r of rows) process.stdout.write(`${line(r)}\n`);
  });
}
