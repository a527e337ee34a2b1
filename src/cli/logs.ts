import type { Command } from "commander";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import type { LogFilter } from "../store/query.js";
import {
  addQueryOptions,
  dash,
  nothingFound,
  oneLine,
  openStore,
  TableWriter,
  timeFlag,
  writeOut,
} from "./query-common.js";

interface LogsFlags extends Record<string, unknown> {
  cuid?: string;
  requestId?: string;
  svc?: string;
  since?: string;
  until?: string;
  limit?: string;
  json?: boolean;
}

export function registerLogs(program: Command): void {
  const cmd = program
    .command("logs")
    .description("print the lines of one container instance (CUID), optionally of one request, in time order")
    .option("--cuid <CUID>", "the container instance")
    .option("--request-id <ID>", "only lines of this request")
    .option("--svc <NAME>", "only lines of this service")
    .option("--since <TIME>", "from this time: ISO 8601, or a duration ago such as 15m")
    .option("--until <TIME>", "before this time: ISO 8601, or a duration ago")
    .option("--limit <N>", "at most N lines", "10000");
  addQueryOptions(cmd)
    .addHelpText(
      "after",
      "\nReads the local store (<state-dir>/store and <state-dir>/ledger.jsonl) unless --es is given." +
        "\nExit code 1 when no line matches.\n\nExamples:\n" +
        "  ikontainer logs --cuid 0196f1c2-… --since 1h\n" +
        "  ikontainer logs --cuid 0196f1c2-… --request-id 7f3a… --es http://127.0.0.1:9200 --json",
    )
    .action(async (flags: LogsFlags) => {
      if (!flags.cuid && !flags.requestId && !flags.svc)
        throw ERR_INVALID_SETTING(
          "invalid ikontainer logs: give --cuid (and optionally --request-id, --svc)",
        );
      const limit = Number(flags.limit);
      if (!Number.isInteger(limit) || limit <= 0)
        throw ERR_INVALID_SETTING(`invalid --limit: expected a positive integer (got "${flags.limit}")`);
      const filter: LogFilter = { limit };
      if (flags.cuid) filter.cuid = flags.cuid;
      if (flags.requestId) filter.requestId = flags.requestId;
      if (flags.svc) filter.svc = flags.svc;
      const since = timeFlag(flags.since, "--since");
      const until = timeFlag(flags.until, "--until");
      if (since !== undefined) filter.since = since;
      if (until !== undefined) filter.until = until;
      const store = openStore(flags);
      try {
        // streamed: one record at a time from the store to stdout, whatever --limit is
        let found = 0;
        if (flags.json) {
          for await (const r of store.logs(filter)) {
            found++;
            await writeOut(`${JSON.stringify(r)}\n`);
          }
        } else {
          const t = new TableWriter(["TIME", "SVC", "CUID", "REQUEST-ID", "MESSAGE"], writeOut);
          for await (const r of store.logs(filter))
            await t.add([dash(r.time), dash(r.svc), dash(r.cuid), dash(r.request_id), oneLine(r)]);
          await t.end();
          found = t.rows;
        }
        if (found === 0) nothingFound("no lines match");
      } finally {
        await store.close();
      }
    });
}
