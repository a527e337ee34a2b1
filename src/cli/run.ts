import type { Command } from "commander";
import { AGENT_SETTINGS, loadAgentConfig, TAIL_SETTINGS } from "../config/agent.js";
import { loadNodeConfig, NODE_SETTINGS, type NodeConfig } from "../config/node.js";
import { resolveSettings } from "../config/settings.js";
import { errorMessage } from "../core/errors.js";
import { Tailer } from "../sources/tail/tailer.js";
import {
  addAgentOptions,
  EXTRA_AGENT_SETTINGS,
  runStopHooks,
  startAgentCore,
  startObserve,
} from "./agent-common.js";
import { agentLedger } from "./elasticsearch-wiring.js";
import { ownOutputs } from "./own-output.js";

/** How long SIGTERM may take: read what is there, hand it to the sinks, checkpoint, exit. */
export const STOP_DEADLINE_MS = 4500;

export function registerRun(program: Command): void {
  const cmd = program
    .command("run")
    .description(
      "tail log files under one or more folders and stamp every line with this container's CUID and svc",
    )
    .addHelpText(
      "after",
      "\nExample:\n  ikontainer run --watch /var/log/app --output file:/var/log/stamped --state-dir /var/lib/ikontainer --svc web" +
        "\n  ikontainer run --mode node --output stdout --state-dir /var/lib/ikontainer   (DaemonSet: /var/log/pods, one CUID per container instance)",
    );
  addAgentOptions(cmd, [...TAIL_SETTINGS, ...NODE_SETTINGS]).action(
    async (flags: Record<string, unknown>) => {
      const defs = [...AGENT_SETTINGS, ...TAIL_SETTINGS, ...EXTRA_AGENT_SETTINGS, ...NODE_SETTINGS];
      const node = loadNodeConfig(flags, process.env, defs);
      const config = loadAgentConfig(flags, {
        tail: true,
        node: node.mode === "node",
        extraDefs: [...EXTRA_AGENT_SETTINGS, ...NODE_SETTINGS],
      });
      const settings = resolveSettings(defs, flags);
      await runAgent(config, settings, node);
    },
  );
}

async function runAgent(
  config: ReturnType<typeof loadAgentConfig>,
  settings: Record<string, unknown>,
  node: NodeConfig,
): Promise<void> {
  // Signals that arrive while starting are held and acted on once everything started can be stopped cleanly
  // (DNS deregistration, ledger stop, checkpoint) instead of killing the process half-way.
  let early: string | undefined;
  let onSignal: ((signal: string) => void) | undefined;
  for (const sig of ["SIGTERM", "SIGINT"] as const)
    process.once(sig, () => {
      if (onSignal) onSignal(sig);
      else early ??= sig;
    });

  const parts = await startAgentCore(config, settings, { checkpoints: true, mode: "run" });
  const { pipeline, checkpoints, log } = parts;
  if (node.mode === "node" && config.watch.length > 0)
    log.warn(
      { watch: config.watch, podLogDir: node.podLogDir },
      "--watch is ignored in --mode node: it reads the kubelet's pod logs (--pod-log-dir, --docker-log-dir)",
    );
  // Node mode: kubelet's pod logs, a CUID per container instance, CRI / Docker decoding (src/sources/node).
  // Loaded only in node mode: a sidecar's memory does not carry the kubelet and CRI code (issue 13).
  const NodeMode = node.mode === "node" ? (await import("../sources/node/node-mode.js")).NodeMode : undefined;
  const nodeMode =
    NodeMode !== undefined
      ? new NodeMode({
          node,
          stateDir: config.stateDir,
          cuidVersion: config.cuidVersion,
          maxLineBytes: config.maxLineBytes,
          log,
          shipped: (streamKey) =>
            Object.values(checkpoints!.inputs()).some(
              (i) => i.stream === streamKey && (i.offset > 0 || i.finished === true),
            ),
          ...(agentLedger ? { ledger: agentLedger } : {}),
        })
      : undefined;
  const roots = nodeMode?.roots ?? config.watch;
  const own = ownOutputs({ roots, outputs: config.output, stateDir: config.stateDir });
  if (own.skipped.length)
    log.info(
      { paths: own.skipped, why: "outputs and state inside a watched folder are never read back" },
      "not reading the agent's own output",
    );
  const tailer = new Tailer({
    roots,
    skip: own.skip,
    include: nodeMode?.include ?? config.include,
    ...(nodeMode ? { streamFor: nodeMode.streamFor, decoderFor: nodeMode.decoderFor } : {}),
    exclude: [...config.exclude, ...(nodeMode?.exclude ?? [])],
    maxLineBytes: config.maxLineBytes,
    lingerMs: config.linger,
    pollMs: config.pollInterval,
    readDelayMs: config.readDelay,
    readFrom: config.readFrom,
    watcher: config.watcher,
    // Node mode: 16 reads at once peaked at 147–149 MiB with 500 pods instead of 181–185 (32), at the same lines/s
    // and 15% less CPU; a folder agent with 500 files lost ~13% of its lines/s at 16, so it keeps 32 (issue 13,
    // bench/node-mode.ts --max-concurrent-reads, docs/benchmark-throughput.md).
    maxConcurrentReads: config.maxConcurrentReads ?? (nodeMode ? 16 : 32),
    checkpoints: checkpoints!,
    log,
    ownedSince: Date.parse(parts.cuid.created_at),
    submit: (batch, input, after) => pipeline.submit(batch, { input, after }),
    writeAheadBytes: pipeline.writeAheadBytes,
  });
  checkpoints!.start(config.checkpointInterval, (e) =>
    log.error({ err: errorMessage(e) }, "checkpoint write failed"),
  );
  await startObserve(parts, () => tailer.ready);
  await nodeMode?.start();
  await tailer.start();
  log.info({ watch: nodeMode?.roots ?? config.watch, files: tailer.filesOpen }, "tailing");

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      // e.g. leaving DNS: bounded on its own, and waited for even when the drain runs into the deadline
      const leaving = Promise.allSettled(parts.onStopping.map((f) => f()));
      log.info({ signal }, "stopping: draining open files");
      const hard = setTimeout(() => {
        log.error(
          "drain did not finish in time; exiting (unacknowledged lines are read again at next start)",
        );
        try {
          checkpoints!.stop();
        } finally {
          void leaving.finally(() => process.exit(1));
        }
      }, STOP_DEADLINE_MS);
      hard.unref();
      const deadline = setTimeout(() => pipeline.beginStop(), STOP_DEADLINE_MS - 1500);
      deadline.unref();
      void (async () => {
        try {
          await tailer.stop(true);
          await nodeMode?.stop();
          await pipeline.close();
          checkpoints!.stop();
          await runStopHooks(parts);
        } catch (e) {
          log.error({ err: errorMessage(e) }, "error while stopping");
          process.exitCode = 1;
        }
        clearTimeout(hard);
        resolve();
      })();
    };
    onSignal = stop;
    if (early) stop(early);
  });
  log.info("stopped");
}
