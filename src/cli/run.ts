import type { Command } from "commander";
import { AGENT_SETTINGS, loadAgentConfig, TAIL_SETTINGS } from "../config/agent.js";
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
      "\nExample:\n  ikontainer run --watch /var/log/app --output file:/var/log/stamped --state-dir /var/lib/ikontainer --svc web",
    );
  addAgentOptions(cmd, TAIL_SETTINGS).action(async (flags: Record<string, unknown>) => {
    const config = loadAgentConfig(flags, { tail: true });
    const settings = resolveSettings([...AGENT_SETTINGS, ...TAIL_SETTINGS, ...EXTRA_AGENT_SETTINGS], flags);
    await runAgent(config, settings);
  });
}

async function runAgent(
  config: ReturnType<typeof loadAgentConfig>,
  settings: Record<string, unknown>,
): Promise<void> {
  const parts = await startAgentCore(config, settings, { checkpoints: true, mode: "run" });
  const { pipeline, checkpoints, log } = parts;
  const tailer = new Tailer({
    roots: config.watch,
    include: config.include,
    exclude: config.exclude,
    maxLineBytes: config.maxLineBytes,
    lingerMs: config.linger,
    pollMs: config.pollInterval,
    readFrom: config.readFrom,
    checkpoints: checkpoints!,
    log,
    submit: (batch, input) => pipeline.submit(batch, { input }),
  });
  checkpoints!.start(config.checkpointInterval, (e) =>
    log.error({ err: errorMessage(e) }, "checkpoint write failed"),
  );
  await startObserve(parts, () => tailer.ready);
  await tailer.start();
  log.info({ watch: config.watch, files: tailer.filesOpen }, "tailing");

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "stopping: draining open files");
      const hard = setTimeout(() => {
        log.error(
          "drain did not finish in time; exiting (unacknowledged lines are read again at next start)",
        );
        try {
          checkpoints!.stop();
        } finally {
          process.exit(1);
        }
      }, STOP_DEADLINE_MS);
      hard.unref();
      const deadline = setTimeout(() => pipeline.beginStop(), STOP_DEADLINE_MS - 1500);
      deadline.unref();
      void (async () => {
        try {
          await tailer.stop(true);
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
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  log.info("stopped");
}
