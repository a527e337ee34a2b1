import type { Command } from "commander";
import { registerCuid } from "./cuid.js";
import { registerRun } from "./run.js";

/** Every command registers itself here; one file per command in src/cli/. */
export function registerCommands(program: Command): void {
  registerCuid(program);
  registerRun(program);
}
