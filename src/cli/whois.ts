import { isIP } from "node:net";
import type { Command } from "commander";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { EsStore } from "../store/elasticsearch.js";
import { whois } from "../store/query.js";
import { addQueryOptions, dash, nothingFound, openStore, table, timeFlag } from "./query-common.js";

export function registerWhois(program: Command): void {
  const cmd = program
    .command("whois")
    .description(
      "which container instance (CUID) held an IP address, at a moment or ever (from the CUID ledger)",
    )
    .argument("<ip>", "pod IP (or host IP) to look up")
    .option("--at <TIME>", "only the instance that held the IP at this time: ISO 8601, or a duration ago");
  addQueryOptions(cmd)
    .addHelpText(
      "after",
      "\nWhen several instances held the IP, each is listed with its time range. An instance without a clean" +
        "\nstop is taken to have held the IP until the next one started (marked '(inferred)')." +
        "\nExit code 1 when no instance matches.\n\nExample:\n  ikontainer whois 10.1.2.3 --at 2026-11-23T10:15:00Z",
    )
    .action(async (ip: string, flags: Record<string, unknown> & { json?: boolean; at?: string }) => {
      if (!isIP(ip)) throw ERR_INVALID_SETTING(`invalid ip: "${ip}" is not an IPv4 or IPv6 address`);
      const at = timeFlag(flags.at, "--at");
      const store = openStore(flags);
      try {
        const ledger = store instanceof EsStore ? await store.ledgerForIp(ip) : await store.ledger();
        const found = whois(ledger, ip, at);
        if (flags.json) process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
        else if (found.length > 0)
          process.stdout.write(
            table(
              ["CUID", "SVC", "POD", "NAMESPACE", "POD-IP", "STARTED", "STOPPED"],
              found.map((m) => [
                m.cuid,
                m.svc,
                dash(m.pod),
                dash(m.namespace),
                dash(m.pod_ip ?? m.host_ip),
                m.started_at,
                m.stopped_at ?? (m.held_until ? `${m.held_until} (inferred)` : "running"),
              ]),
            ),
          );
        if (found.length === 0)
          nothingFound(
            `no container instance held ${ip}${at !== undefined ? ` at ${new Date(at).toISOString()}` : ""}`,
          );
      } finally {
        await store.close();
      }
    });
}
