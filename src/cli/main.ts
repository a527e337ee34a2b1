#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { errorMessage, isIkontainerError } from "../core/errors.js";
import { registerCommands } from "./commands.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

export async function buildProgram(argv: readonly string[]): Promise<Command> {
  const program = new Command("ikontainer")
    .description(
      "Gives every container instance its own identity (CUID) and stamps it on every log line and DNS record it publishes.",
    )
    .version(pkg.version)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  await registerCommands(program, argv);
  for (const c of program.commands) c.exitOverride();
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = await buildProgram(argv.slice(2));
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with code 0; usage errors get exit code 2 (commander printed the line).
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    if (isIkontainerError(e)) {
      process.stderr.write(`ikontainer: ${e.message} [${e.code}]\n`);
      process.exitCode = e.exitCode;
      return;
    }
    process.stderr.write(`ikontainer: internal error: ${errorMessage(e)}\n${(e as Error).stack ?? ""}\n`);
    process.exitCode = 1;
  }
}

// `ikontainer logs … | head`: a closed pipe ends the command quietly instead of with a stack trace.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});

await main(process.argv);
