import type { Command } from "commander";
import { type Trace, type TraceHop, traceHops } from "../store/query.js";
import {
  addQueryOptions,
  dash,
  nothingFound,
  oneLine,
  openStore,
  timeFlag,
  writeOut,
} from "./query-common.js";

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
        const trace = await traceHops(
          store.logs({
            requestId,
            ...(since !== undefined ? { since } : {}),
            ...(until !== undefined ? { until } : {}),
          }),
          (cuids) => store.ledger(cuids),
        );
        if (flags.json) await writeTraceJson(requestId, trace);
        else await writeTraceText(trace);
        if (trace.hops.length === 0) nothingFound(`no line carries request ID ${requestId}`);
      } finally {
        await store.close();
      }
    });
}

async function writeTraceText(trace: Trace): Promise<void> {
  let current = -1;
  for await (const { hop, line } of trace.lines()) {
    if (hop !== current) {
      current = hop;
      const h = trace.hops[hop]!;
      await writeOut(
        `${hop + 1}. ${dash(h.svc)}  cuid ${dash(h.cuid)}  pod ${dash(h.pod)}  ip ${dash(h.pod_ip)}  ` +
          `${dash(h.first)} .. ${dash(h.last)}  (${h.count} line${h.count === 1 ? "" : "s"})\n`,
      );
    }
    await writeOut(`     ${dash(line.time)}  ${oneLine(line)}\n`);
  }
}

/** Indents every line of a pretty-printed JSON value but the first. */
const indent = (json: string, pad: string): string => json.replaceAll("\n", `\n${pad}`);

/**
 * Streams `{"request_id", "hops": [{cuid, svc, lines: [...], pod, pod_ip, first, last}]}`, byte for byte what
 * `JSON.stringify(…, null, 2)` of the whole object gives, without holding every line.
 */
async function writeTraceJson(requestId: string, trace: Trace): Promise<void> {
  if (trace.hops.length === 0) {
    await writeOut(`${JSON.stringify({ request_id: requestId, hops: [] }, null, 2)}\n`);
    return;
  }
  const tail = (h: TraceHop): string => {
    const rest: Record<string, string> = {};
    for (const k of ["pod", "pod_ip", "first", "last"] as const) if (h[k] !== undefined) rest[k] = h[k];
    let text = "\n      ]";
    for (const [k, v] of Object.entries(rest)) text += `,\n      ${JSON.stringify(k)}: ${JSON.stringify(v)}`;
    return `${text}\n    }`;
  };
  await writeOut(`{\n  "request_id": ${JSON.stringify(requestId)},\n  "hops": [`);
  let current = -1;
  for await (const { hop, line } of trace.lines()) {
    let text = "";
    if (hop !== current) {
      if (current >= 0) text += `${tail(trace.hops[current]!)},`;
      const h = trace.hops[hop]!;
      text += `\n    {\n      "cuid": ${JSON.stringify(h.cuid)},\n      "svc": ${JSON.stringify(h.svc)},\n      "lines": [\n`;
      current = hop;
    } else text += ",\n";
    text += `        ${indent(JSON.stringify(line, null, 2), "        ")}`;
    await writeOut(text);
  }
  await writeOut(`${tail(trace.hops[current]!)}\n  ]\n}\n`);
}
