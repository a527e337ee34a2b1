import { ERR_INVALID_SETTING } from "../core/errors.js";
import type { Logger } from "../observe/logger.js";
import type { BatchEncoder, StructuredOptions } from "../transforms/tag.js";
import { createEncoder } from "../transforms/tag.js";
import { FileSink, type SinkWarn } from "./file.js";
import type { Sink } from "./sink.js";
import { StreamSink } from "./stdout.js";

export interface SinkFactoryContext {
  format: "append" | "json";
  structured: StructuredOptions;
  stateDir: string;
  /** Settings resolved for the command (sinks read their own keys, e.g. Elasticsearch auth). */
  settings: Readonly<Record<string, unknown>>;
  /** The agent's logger: sinks say why they retry, and what they notice (an output file cut short). */
  log?: Logger;
}

/** The file sink reports through the agent's logger when there is one. */
function fileSinkWarn(ctx: SinkFactoryContext): SinkWarn | undefined {
  const log = ctx.log;
  return log ? (fields, msg) => log.warn(fields, msg) : undefined;
}

type Factory = (spec: string, ctx: SinkFactoryContext, encoder: BatchEncoder) => Sink | Promise<Sink>;

/**
 * `--output` specs → sinks. Prefix → factory; network sinks register here too.
 * `store:DIR` is the embedded local store (a file sink that always writes JSON, for the query commands).
 */
const factories: Array<[prefix: string, make: Factory]> = [
  ["file:", (spec, ctx, enc) => new FileSink(spec.slice(5), enc, fileSinkWarn(ctx))],
  [
    "store:",
    (spec, ctx) => new FileSink(spec.slice(6), createEncoder("json", ctx.structured), fileSinkWarn(ctx)),
  ],
  [
    "stdout",
    (spec, _ctx, enc) => {
      if (spec !== "stdout") throw ERR_INVALID_SETTING(`invalid --output: "${spec}" (did you mean stdout?)`);
      return new StreamSink("stdout", enc, process.stdout);
    },
  ],
  // Network sinks load their client libraries only when used (start-up time and memory of the agent).
  ["fluentd://", async (spec, ctx) => (await import("./fluentd.js")).createFluentdSink(spec, ctx)],
];

export function registerSinkFactory(prefix: string, make: Factory): void {
  factories.push([prefix, make]);
}

export const OUTPUT_HELP =
  "file:DIR | store:DIR | stdout | fluentd://HOST:PORT | elasticsearch:http(s)://HOST:PORT";

export async function createSinks(specs: readonly string[], ctx: SinkFactoryContext): Promise<Sink[]> {
  const enc = createEncoder(ctx.format, ctx.structured);
  const sinks: Sink[] = [];
  for (const spec of specs) {
    const f = factories.find(([p]) => spec.startsWith(p));
    if (!f) throw ERR_INVALID_SETTING(`invalid --output: unknown sink "${spec}" (expected ${OUTPUT_HELP})`);
    if (spec.startsWith("file:") && spec.length === 5)
      throw ERR_INVALID_SETTING('invalid --output: "file:" needs a folder, e.g. file:/var/log/ikontainer');
    sinks.push(await f[1](spec, ctx, enc));
  }
  const ids = new Set<string>();
  for (const s of sinks) {
    if (ids.has(s.id)) throw ERR_INVALID_SETTING(`invalid --output: ${s.id} is given twice`);
    ids.add(s.id);
  }
  return sinks;
}
