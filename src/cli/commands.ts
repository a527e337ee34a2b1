import type { Command } from "commander";
import { registerAmbassador } from "./ambassador.js";
import { registerCuid } from "./cuid.js";
import { registerDashboards } from "./dashboards.js";
import "./elasticsearch-wiring.js";
import "./fluentd-wiring.js";
import { registerDdns } from "./ddns.js";
import { registerExec } from "./exec.js";
import { registerLogs } from "./logs.js";
import { registerProxy } from "./proxy.js";
import { registerResolve } from "./resolve.js";
import { registerRun } from "./run.js";
import { registerTrace } from "./trace.js";
import { registerWhois } from "./whois.js";

/** Every command registers itself here; one file per command in src/cli/. */
export function registerCommands(program: Command): void {
  registerCuid(program);
  registerRun(program);
  registerExec(program);
  registerDdns(program);
  registerResolve(program);
  registerProxy(program);
  registerAmbassador(program);
  registerLogs(program);
  registerTrace(program);
  registerWhois(program);
  registerDashboards(program);
}
