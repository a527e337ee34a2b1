import type { Command } from "commander";

type Register = (program: Command) => void;

/**
 * Every command, one file each in src/cli/. A command's module is loaded only when that command runs (or for the
 * top-level --help), so `ikontainer run` never loads the DNS, Elasticsearch or query code it does not use.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  cuid: async () => (await import("./cuid.js")).registerCuid,
  run: async () => (await import("./run.js")).registerRun,
  exec: async () => (await import("./exec.js")).registerExec,
  ddns: async () => (await import("./ddns.js")).registerDdns,
  resolve: async () => (await import("./resolve.js")).registerResolve,
  proxy: async () => (await import("./proxy.js")).registerProxy,
  ambassador: async () => (await import("./ambassador.js")).registerAmbassador,
  logs: async () => (await import("./logs.js")).registerLogs,
  trace: async () => (await import("./trace.js")).registerTrace,
  whois: async () => (await import("./whois.js")).registerWhois,
  dashboards: async () => (await import("./dashboards.js")).registerDashboards,
  ui: async () => (await import("./ui.js")).registerUi,
};

/** Modules that add outputs, settings and start hooks to the agent commands (run, exec). */
async function loadAgentPlugins(): Promise<void> {
  await import("./elasticsearch-wiring.js");
  await import("./fluentd-wiring.js");
  await import("./ddns.js"); // DNS registration settings and start hook
}

export async function registerCommands(program: Command, argv: readonly string[]): Promise<void> {
  const name = argv.find((a) => !a.startsWith("-"));
  const only = name !== undefined && name in COMMANDS ? [name] : Object.keys(COMMANDS);
  if (only.includes("run") || only.includes("exec")) await loadAgentPlugins();
  for (const n of only) (await COMMANDS[n]!())(program);
}
