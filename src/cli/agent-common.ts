import type { Command } from "commander";
import { AGENT_SETTINGS, type AgentConfig } from "../config/agent.js";
import { addSettingOptions, type SettingDef } from "../config/settings.js";
import { CheckpointStore } from "../core/checkpoint.js";
import { type CuidRecord, loadOrCreateCuid } from "../core/cuid.js";
import { Pipeline } from "../core/pipeline.js";
import { ensureStateDir } from "../core/state-dir.js";
import { createLogger, type Logger } from "../observe/logger.js";
import { startObserveServer } from "../observe/server.js";
import { createSinks, OUTPUT_HELP } from "../sinks/index.js";
import type { Sink } from "../sinks/sink.js";
import { RequestIdExtractor } from "../transforms/request-id.js";
import { downwardFields, nodeLevelFields, type StructuredOptions } from "../transforms/tag.js";

/** Extra setting tables other modules contribute to `run` and `exec` (sinks, DNS registration). */
export const EXTRA_AGENT_SETTINGS: SettingDef[] = [];

export function addAgentOptions(cmd: Command, extra: readonly SettingDef[] = []): Command {
  return addSettingOptions(cmd, [...AGENT_SETTINGS, ...extra, ...EXTRA_AGENT_SETTINGS]).addHelpText(
    "after",
    `\nOutputs (--output, repeatable): ${OUTPUT_HELP}`,
  );
}

export interface AgentParts {
  config: AgentConfig;
  settings: Record<string, unknown>;
  log: Logger;
  cuid: CuidRecord;
  structured: StructuredOptions;
  pipeline: Pipeline;
  checkpoints: CheckpointStore | undefined;
  /** Functions run at clean stop, last registered first (DNS deregistration, ledger stop, …). */
  onStop: Array<() => Promise<void>>;
  /**
   * Called the moment a stop begins, before the drain (which may run into the stop deadline): e.g. leaving DNS
   * at once, so nothing is sent to an instance that is going away and its records never outlive it.
   */
  onStopping: Array<() => Promise<unknown>>;
  /** exec: awaited before the first SIGTERM reaches the child (leaving DNS, then letting cached answers expire). */
  beforeChildStop: Array<() => Promise<void>>;
}

/** Hooks other modules register to run once the agent's identity and pipeline exist (ledger, DNS). */
export type AgentStartHook = (parts: AgentParts, mode: "run" | "exec") => Promise<void>;
export const AGENT_START_HOOKS: AgentStartHook[] = [];

export async function startAgentCore(
  config: AgentConfig,
  settings: Record<string, unknown>,
  opts: {
    checkpoints: boolean;
    mode: "run" | "exec";
    /** Sinks that need the identity (exec: the child's stamped lines on our own stdout/stderr). */
    extraSinks?: (structured: StructuredOptions) => Sink[];
  },
): Promise<AgentParts> {
  const log = createLogger(config.logLevel);
  ensureStateDir(config.stateDir);
  const cuid = loadOrCreateCuid(config.stateDir, config.cuidVersion);
  const structured: StructuredOptions = {
    identity: { cuid: cuid.cuid, svc: config.svc },
    requestIds: new RequestIdExtractor(config.requestIdRegex),
    // Node mode: the agent's own pod is not the one that wrote a line; only node-level facts are shared.
    fields: settings.mode === "node" ? nodeLevelFields(process.env) : downwardFields(process.env),
  };
  const checkpoints = opts.checkpoints ? new CheckpointStore(config.stateDir) : undefined;
  const sinks = [
    ...(opts.extraSinks?.(structured) ?? []),
    ...(await createSinks(config.output, {
      format: config.format,
      structured,
      stateDir: config.stateDir,
      settings,
      log,
    })),
  ];
  const pipeline = new Pipeline(sinks, checkpoints, log);
  await pipeline.recover();
  // Written before the first output byte, so even the very first start counts as "has a checkpoint".
  checkpoints?.flush(true);
  const parts: AgentParts = {
    config,
    settings,
    log,
    cuid,
    structured,
    pipeline,
    checkpoints,
    onStop: [],
    onStopping: [],
    beforeChildStop: [],
  };
  for (const hook of AGENT_START_HOOKS) await hook(parts, opts.mode);
  log.info(
    { cuid: cuid.cuid, svc: config.svc, outputs: sinks.map((s) => s.id), mode: opts.mode },
    "agent started",
  );
  return parts;
}

export async function startObserve(parts: AgentParts, ready: () => boolean): Promise<void> {
  if (parts.config.metricsPort === undefined) return;
  const { port } = await startObserveServer(parts.config.metricsHost, parts.config.metricsPort, {
    ready: () => ready() && parts.pipeline.healthy,
  });
  parts.log.info({ port }, "serving /metrics, /healthz, /readyz");
}

export async function runStopHooks(parts: AgentParts): Promise<void> {
  for (const f of [...parts.onStop].reverse()) {
    try {
      await f();
    } catch (e) {
      parts.log.warn({ err: (e as Error).message }, "stop hook failed");
    }
  }
}
