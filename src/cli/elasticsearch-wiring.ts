import { ES_SINK_SETTINGS, esConnection } from "../config/elasticsearch.js";
import { errorMessage } from "../core/errors.js";
import { registerSinkFactory } from "../sinks/index.js";
import { CuidLedger } from "../store/ledger.js";
import { AGENT_START_HOOKS, type AgentParts, EXTRA_AGENT_SETTINGS } from "./agent-common.js";

/**
 * Plugs Elasticsearch into `run` and `exec`: the `elasticsearch:URL` output, its settings, and the CUID
 * ledger (start at agent start, stop at clean stop; copied to Elasticsearch when an elasticsearch output is set).
 */
EXTRA_AGENT_SETTINGS.push(
  ...ES_SINK_SETTINGS.filter((d) => !EXTRA_AGENT_SETTINGS.some((e) => e.key === d.key)),
);

// The client library loads only when an elasticsearch output is configured.
registerSinkFactory("elasticsearch:", async (spec, ctx) =>
  (await import("../sinks/elasticsearch.js")).elasticsearchSinkFromSpec(
    spec,
    ctx,
    // the sink retries by itself: without this its reasons (e.g. HTTP 401) were never logged
    ctx.log ? (msg, fields) => ctx.log?.warn(fields, msg) : undefined,
  ),
);

/** The agent's ledger (node mode records each container instance in it). */
export let agentLedger: CuidLedger | undefined;

export function openLedger(parts: Pick<AgentParts, "config" | "settings" | "log">): CuidLedger {
  const esOut = parts.config.output.find((o) => o.startsWith("elasticsearch:"));
  return new CuidLedger(parts.config.stateDir, {
    ...(esOut
      ? { es: esConnection(esOut.slice("elasticsearch:".length), parts.settings, process.env, "--output") }
      : {}),
    onWarn: (msg, fields) => parts.log.warn(fields, msg),
  });
}

AGENT_START_HOOKS.push(async (parts) => {
  const ledger = openLedger(parts);
  agentLedger = ledger;
  const nodeMode = parts.settings.mode === "node";
  const f = parts.structured.fields ?? {};
  if (!nodeMode) {
    // the agent runs beside (or as) one container instance: the ledger row is that instance
    ledger.recordStart({
      cuid: parts.cuid.cuid,
      svc: parts.config.svc,
      ...(f.pod ? { pod: f.pod } : {}),
      ...(f.namespace ? { namespace: f.namespace } : {}),
      ...(f.node ? { node: f.node } : {}),
      ...(f.pod_ip ? { pod_ip: f.pod_ip } : {}),
      ...(f.host_ip ? { host_ip: f.host_ip } : {}),
    });
  }
  parts.onStop.push(async () => {
    try {
      if (!nodeMode) ledger.recordStop(parts.cuid.cuid);
      if (!(await ledger.flush(2000)))
        parts.log.warn({}, "CUID ledger not yet copied to Elasticsearch; it will be at next start");
    } catch (e) {
      parts.log.warn({ err: errorMessage(e) }, "CUID ledger stop failed");
    } finally {
      await ledger.close();
      agentLedger = undefined;
    }
  });
});
