import type { Command } from "commander";
import { traceHops } from "../store/query.js";
import { addQueryOptions, dash, nothingFound, oneLine, openStore, timeFlag } from "./query-common.js";

export function registerTrace(program: Command): void {
  const cmd = program
    .command("trace")
    .description(
      "every container instance a request passed through, in time order, with CUID, svc, pod IP and its lines",
    )
    .argument("<request-id>", "the request ID (x-request-id) to follow")
    .option("--since <TIME>", "from this time: ISO 8601, or a duration ago such as 15m")
    .option("--until <TIME>", "before this time");
  addQueryOptions(cmd)
    .addHelpText(
      "after",
      "\nExit code 1 when no line carries the request ID.\n\nExample:\n  ikontainer trace 7f3a9c2e-… --es http://127.0.0.1:9200",
    )
    .action(async (requestId: string, flags: Record<string, unknown> & { json?: boolean }) => {
      const store = openStore(flags);
      try {
        const since = timeFlag(flags.since, "--since");
        const until = timeFlag(flags.until, "--until");
        const recs = await store.logs({
          requestId,
          ...(since !== undefined ? { since } : {}),
          ...(until !== undefined ? { until } : {}),
        });
        const cuids = [...new Set(recs.map((r) => r.cuid))];
        const hops = traceHops(recs, cuids.length > 0 ? await store.ledger(cuids) : []);
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ request_id: requestId, hops }, null, 2)}\n`);
        } else {
          hops.forEach((h, i) => {
            process.stdout.write(
              `${i + 1}. ${h.svc}  cuid ${h.cuid}  pod ${dash(h.pod)}  ip ${dash(h.pod_ip)}  ` +
                `${dash(h.first)} .. ${dash(h.last)}  (${h.lines.length} line${h.lines.length === 1 ? "" : "s"})\n`,
            );
            for (const l of h.lines) process.stdout.write(`     ${dash(l.time)}  ${oneLine(l)}\n`);
          });
        }
        if (hops.length === 0) nothingFound(`no line carries request ID ${requestId}`);
      } finally {
        await store.close();
      }
    });
}
