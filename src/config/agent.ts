import { join } from "node:path";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { resolveSettings, type SettingDef } from "./settings.js";

/** Defaults live here and nowhere else. */
export const DEFAULT_INCLUDE = ["**/*.log"];
export const DEFAULT_EXCLUDE = [
  "**/*.log.*",
  "**/*.[0-9]",
  "**/*.gz",
  "**/*.bz2",
  "**/*.xz",
  "**/*.zst",
  "**/*.zip",
];

/** `run` and `exec`: batching reads of new output. */
export const READ_DELAY_SETTING: SettingDef = {
  key: "readDelay",
  kind: "duration",
  arg: "DURATION",
  default: 25,
  description:
    "wait this long after new output (a file changed; exec: the child wrote a little) before reading it, so lines written close together are read, tagged and written at once (less CPU per line; adds at most this to the delivery delay; 0: read at once)",
};

/** Settings shared by `run` and `exec`. */
export const AGENT_SETTINGS: SettingDef[] = [
  {
    key: "stateDir",
    kind: "string",
    arg: "DIR",
    default: "./ikontainer-state",
    description: "state dir: CUID, checkpoints, local store",
  },
  {
    key: "svc",
    kind: "string",
    arg: "NAME",
    description: "service name stamped on every line (default: from the Downward API, see README)",
  },
  {
    key: "cuidVersion",
    kind: "enum",
    choices: ["7", "4"],
    default: "7",
    description: "UUID version of a new CUID",
  },
  {
    key: "output",
    kind: "list",
    arg: "SINK",
    description:
      "sink, repeatable: file:DIR | stdout (default: store:<state-dir>/store, JSON lines for the query commands)",
  },
  {
    key: "format",
    kind: "enum",
    choices: ["append", "json"],
    default: "append",
    description: "line format of file and stdout sinks",
  },
  {
    key: "maxLineBytes",
    kind: "size",
    arg: "SIZE",
    default: 1024 * 1024,
    description: "longer lines are emitted as tagged pieces",
  },
  {
    key: "requestIdRegex",
    kind: "string",
    arg: "REGEX",
    description: "extra request-ID pattern; its first capture group is the ID",
  },
  {
    key: "metricsPort",
    kind: "port",
    arg: "PORT",
    description: "serve /metrics, /healthz and /readyz on this port",
  },
  {
    key: "metricsHost",
    kind: "string",
    arg: "HOST",
    default: "0.0.0.0",
    description: "address for --metrics-port",
  },
  {
    key: "logLevel",
    kind: "enum",
    choices: ["trace", "debug", "info", "warn", "error", "silent"],
    default: "info",
    description: "the agent's own log level (JSON on stderr)",
  },
];

/** Settings of `run` only (tailing). */
export const TAIL_SETTINGS: SettingDef[] = [
  {
    key: "watch",
    kind: "list",
    arg: "DIR",
    short: "w",
    description: "folder to tail recursively, repeatable",
  },
  {
    key: "include",
    kind: "list",
    arg: "GLOB",
    default: DEFAULT_INCLUDE,
    description: "files to read, relative to a watched folder, repeatable",
  },
  {
    key: "exclude",
    kind: "list",
    arg: "GLOB",
    default: DEFAULT_EXCLUDE,
    description: "files to skip (rotated, compressed), repeatable",
  },
  {
    key: "linger",
    kind: "duration",
    arg: "DURATION",
    default: 5000,
    description:
      "how long a rotated or deleted file is still read before its unterminated last line is emitted",
  },
  {
    key: "readFrom",
    kind: "enum",
    choices: ["head", "tail"],
    default: "head",
    description: "where to start files that have no checkpoint yet, when the agent starts",
  },
  {
    key: "pollInterval",
    kind: "duration",
    arg: "DURATION",
    default: 1000,
    description: "safety-net rescan of watched files (events are primary)",
  },
  READ_DELAY_SETTING,
  {
    key: "watcher",
    kind: "enum",
    choices: ["inotify", "chokidar", "poll"],
    default: "inotify",
    description:
      "how folders and new lines are found: one native inotify watch per folder (default), chokidar (re-lists a folder on every change in it: about twice the CPU per line), or poll (no inotify: every folder listed and every file looked at each --poll-interval; the least CPU per line at low rates, lines arrive up to one interval later; also for filesystems without inotify)",
  },
  {
    // Issue 13: each read in flight holds its lines until every sink accepted them, so this bounds the catch-up
    // burst's memory when many files have a backlog (node mode, thousands of files).
    key: "maxConcurrentReads",
    kind: "int",
    arg: "N",
    description:
      "files read at once, at most, while catching up (each read holds up to 64 KiB of lines until the sinks took them); lower uses less memory with many files, higher may read a backlog faster (default: 32; 16 with --mode node)",
  },
  {
    key: "checkpointInterval",
    kind: "duration",
    arg: "DURATION",
    default: 1000,
    description: "how often accepted progress is written to the state dir",
  },
];

export interface AgentConfig {
  stateDir: string;
  svc: string;
  cuidVersion: 4 | 7;
  output: string[];
  format: "append" | "json";
  maxLineBytes: number;
  requestIdRegex: string | undefined;
  metricsPort: number | undefined;
  metricsHost: string;
  logLevel: string;
  watch: string[];
  include: string[];
  exclude: string[];
  linger: number;
  readFrom: "head" | "tail";
  pollInterval: number;
  readDelay: number;
  checkpointInterval: number;
  watcher: "inotify" | "chokidar" | "poll";
  /** `run` only; undefined: the mode's default (src/cli/run.ts). */
  maxConcurrentReads: number | undefined;
}

/**
 * svc from the Downward API: `<service>.<namespace>.<cluster-domain>` from IKONTAINER_SERVICE (or the pod's
 * `app` label via SERVICE_NAME), POD_NAMESPACE, and CLUSTER_DOMAIN (default cluster.local).
 */
export function svcFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  const service = env.IKONTAINER_SERVICE ?? env.SERVICE_NAME;
  if (!service) return undefined;
  const ns = env.POD_NAMESPACE;
  if (!ns) return service;
  return `${service}.${ns}.${env.CLUSTER_DOMAIN ?? "cluster.local"}`;
}

export function loadAgentConfig(
  flags: Record<string, unknown>,
  opts: {
    tail: boolean;
    env?: NodeJS.ProcessEnv;
    /** Node mode (src/config/node.ts): no --watch needed, svc is per container. */
    node?: boolean;
    /** The command's other settings (sinks, DNS, node mode), so their keys in a --config file are known. */
    extraDefs?: readonly SettingDef[];
  },
): AgentConfig {
  const env = opts.env ?? process.env;
  const defs = [
    ...(opts.tail ? [...AGENT_SETTINGS, ...TAIL_SETTINGS] : AGENT_SETTINGS),
    ...(opts.extraDefs ?? []),
  ];
  const s = resolveSettings(defs, flags, env);
  const svc = (s.svc as string | undefined) ?? svcFromEnv(env) ?? (opts.node ? "ikontainer-node" : undefined);
  if (!svc)
    throw ERR_INVALID_SETTING(
      "invalid --svc: no service name; pass --svc NAME or set IKONTAINER_SERVICE (and POD_NAMESPACE) from the Downward API",
    );
  if (s.requestIdRegex !== undefined) {
    try {
      new RegExp(s.requestIdRegex as string);
    } catch (e) {
      throw ERR_INVALID_SETTING(`invalid --request-id-regex: ${(e as Error).message}`);
    }
  }
  if (s.maxConcurrentReads !== undefined && (s.maxConcurrentReads as number) < 1)
    throw ERR_INVALID_SETTING("invalid --max-concurrent-reads: expected 1 or more (files read at once)");
  const stateDir = s.stateDir as string;
  const watch = (s.watch as string[] | undefined) ?? [];
  if (opts.tail && watch.length === 0 && !opts.node)
    throw ERR_INVALID_SETTING("invalid --watch: give at least one folder to tail");
  const output = (s.output as string[] | undefined) ?? [`store:${join(stateDir, "store")}`];
  return {
    ...(s as object),
    svc,
    cuidVersion: Number(s.cuidVersion) as 4 | 7,
    output,
    watch,
    include: (s.include as string[] | undefined) ?? DEFAULT_INCLUDE,
    exclude: (s.exclude as string[] | undefined) ?? DEFAULT_EXCLUDE,
  } as AgentConfig;
}
