import type { Command } from "commander";
import { AGENT_SETTINGS, loadAgentConfig, READ_DELAY_SETTING } from "../config/agent.js";
import { STOP_DELAY_SETTING } from "../config/ddns.js";
import { childEnv } from "../config/secrets.js";
import { resolveSettings } from "../config/settings.js";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { StreamSink } from "../sinks/stdout.js";
import { ExecSource } from "../sources/exec.js";
import { createEncoder } from "../transforms/tag.js";
import {
  addAgentOptions,
  EXTRA_AGENT_SETTINGS,
  runStopHooks,
  startAgentCore,
  startObserve,
} from "./agent-common.js";

const EXEC_SETTINGS = [READ_DELAY_SETTING, STOP_DELAY_SETTING];

export function registerExec(program: Command): void {
  const cmd = program
    .command("exec")
    .description(
      "run CMD as a child, stamp its stdout and stderr lines with the CUID, write them to our stdout/stderr and the sinks, forward signals, exit with its code",
    )
    .argument("<command...>", "the application and its arguments, after --")
    .addHelpText(
      "after",
      "\nExample:\n  ikontainer exec --svc web --state-dir /run/ikontainer -- node server.js --port 8080",
    );
  addAgentOptions(cmd, EXEC_SETTINGS).action(async (command: string[], flags: Record<string, unknown>) => {
    const [bin, ...args] = command;
    if (!bin) throw ERR_INVALID_SETTING("invalid command: give the application to run after --");
    const config = loadAgentConfig(flags, { tail: false, extraDefs: EXEC_SETTINGS });
    if (config.output.includes("stdout"))
      throw ERR_INVALID_SETTING(
        "invalid --output stdout: exec already writes the child's stamped lines to stdout (each line would go out twice, and a log collector reading this container's stdout would get them twice); drop --output stdout",
      );
    const settings = resolveSettings([...AGENT_SETTINGS, ...EXEC_SETTINGS, ...EXTRA_AGENT_SETTINGS], flags);
    // The child's lines always go to our own stdout/stderr (stamped), as the container runtime expects.
    const parts = await startAgentCore(config, settings, {
      checkpoints: false,
      mode: "exec",
      extraSinks: (structured) => [
        new StreamSink("console", createEncoder(config.format, structured), process.stdout, process.stderr),
      ],
    });
    await startObserve(parts, () => true);
    const source = new ExecSource(
      bin,
      args,
      config.maxLineBytes,
      (batch) => parts.pipeline.submit(batch),
      childEnv(process.env),
      parts.beforeChildStop.length > 0
        ? async () => {
            await Promise.all(parts.beforeChildStop.map((f) => f()));
          }
        : undefined,
      config.readDelay,
    );
    let result: Awaited<ReturnType<ExecSource["start"]>>;
    try {
      result = await source.start();
    } finally {
      await parts.pipeline.close();
      await runStopHooks(parts);
    }
    parts.log.info({ code: result.code, signal: result.signal }, "child exited");
    process.exitCode = result.code;
  });
}
