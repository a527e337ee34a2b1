/**
 * Issue 16's chaos run as a benchmark: 4 files at 10,000 lines/s in all, each rotated every 4,000 lines
 * (rename, copytruncate, or both alternating), the agent kill -9ed after a seeded random delay (0-1 s) once it is
 * tailing and its output grew, N times, then drained and checked line by line (test/helpers/chaos.ts).
 * Folder mode and node mode (CRI files under a simulated /var/log/pods), idle and beside 2 busy `yes` processes.
 *
 *   npx tsc -p tsconfig.build.json && npx tsc -p bench/tsconfig.json &&
 *   IKON_CLI=$PWD/dist/cli/main.js IKON_WRITER=$PWD/test/fixtures/writer.mjs \
 *     node bench/.work/dist/bench/chaos-rotation.js [--kills 20] [--modes rename,copytruncate,mixed] [--node] [--burners 2]
 *
 * Results: bench/results/chaos-rotation-<time>.json (one row per run: lines, lost, duplicated, restarts).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type ChaosResult, runChaos } from "../test/helpers/chaos.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const { values } = parseArgs({
  options: {
    kills: { type: "string", default: "20" },
    modes: { type: "string", default: "rename,copytruncate,mixed" },
    node: { type: "boolean", default: false },
    burners: { type: "string", default: "0" },
    seed: { type: "string" },
  },
});
const rows: ChaosResult[] = [];
for (const rotation of values.modes!.split(",") as Array<"rename" | "copytruncate" | "mixed">) {
  const seed = Number(values.seed ?? Math.floor(Math.random() * 2 ** 31));
  const started = Date.now();
  const r = await runChaos({
    rotation,
    node: values.node,
    burners: Number(values.burners),
    kills: Number(values.kills),
    seed,
    log: (m) => console.error(`[${rotation}${values.node ? " node" : ""} +${Date.now() - started} ms] ${m}`),
  });
  console.log(JSON.stringify(r));
  rows.push(r);
}
const at = new Date().toISOString().replace(/[:.]/g, "-");
const dir = join(ROOT, "bench/results");
mkdirSync(dir, { recursive: true });
const file = join(
  dir,
  `chaos-rotation-${values.node ? "node-" : ""}${Number(values.burners) ? "contention-" : ""}${at}.json`,
);
writeFileSync(
  file,
  `${JSON.stringify({ machine: { cpus: os.cpus().length, load1: os.loadavg()[0], node: process.version }, rows }, null, 2)}\n`,
);
console.error(`results: ${file}`);
