/**
 * Paired bootstrap intervals for an overhead benchmark result (issue 13, item 4): for every condition and rate,
 * the per-repetition relative difference of p50 and p99 to the no-agent trial of the same repetition, the median
 * of those differences with a seeded percentile-bootstrap 95% interval, and how many repetitions would bring the
 * interval's half-width below 2% if it shrinks as 1/√n.
 *
 *   npx tsc -p bench/tsconfig.json && node bench/.work/dist/bench/overhead-intervals.js bench/results/overhead-X.json
 *
 * Writes bench/results/overhead-X.intervals.json and prints a table.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { bootstrapMedian, type PairedTrial, pairedDifferences } from "./paired-stats.js";

const TARGET_HALF_WIDTH = 0.02;
const SEED = 20261204;

interface StoredTrial {
  condition: string;
  rate: number;
  rep: number;
  error?: string;
  load?: { p50: number | null; p99: number | null };
}

function main(): void {
  const file = process.argv[2];
  if (!file || file === "--help") {
    process.stderr.write("usage: overhead-intervals.js bench/results/overhead-<stamp>.json\n");
    process.exit(file ? 0 : 2);
  }
  const result = JSON.parse(readFileSync(file, "utf8")) as { trials: StoredTrial[] };
  const trials: PairedTrial[] = result.trials
    .filter((t) => t.load && !t.error)
    .map((t) => ({ condition: t.condition, rate: t.rate, rep: t.rep, p50: t.load!.p50, p99: t.load!.p99 }));
  const rates = [...new Set(trials.map((t) => t.rate))].sort((a, b) => a - b);
  const conditions = [...new Set(trials.map((t) => t.condition))].filter((c) => c !== "none");
  const rows = [];
  for (const rate of rates) {
    for (const condition of conditions) {
      const row: Record<string, unknown> = { rate, condition };
      for (const key of ["p50", "p99"] as const) {
        const diffs = pairedDifferences(trials, condition, rate, key);
        row[key] = {
          differences: diffs,
          ...bootstrapMedian(diffs, { seed: SEED, targetHalfWidth: TARGET_HALF_WIDTH }),
        };
      }
      rows.push(row);
    }
  }
  const out = file.replace(/\.json$/, ".intervals.json");
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        benchmark: "overhead-intervals",
        source: file,
        method:
          "median of paired per-repetition relative differences; percentile bootstrap, 10,000 resamples, 95%",
        seed: SEED,
        targetHalfWidth: TARGET_HALF_WIDTH,
        rows,
      },
      null,
      2,
    )}\n`,
  );
  const pct = (x: number | undefined) =>
    x === undefined ? "-" : `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}%`;
  process.stdout.write(
    "rate condition            n  p50 [95% CI]                 p99 [95% CI]                 reps for ±2% (p50/p99)\n",
  );
  for (const r of rows) {
    const a = r.p50 as {
      n?: number;
      median?: number;
      low?: number;
      high?: number;
      repetitionsForTarget?: number;
    };
    const b = r.p99 as typeof a;
    process.stdout.write(
      `${String(r.rate).padEnd(4)} ${String(r.condition).padEnd(20)} ${String(a.n ?? 0).padEnd(2)} ` +
        `${pct(a.median)} [${pct(a.low)}, ${pct(a.high)}]`.padEnd(29) +
        `${pct(b.median)} [${pct(b.low)}, ${pct(b.high)}]`.padEnd(29) +
        `${a.repetitionsForTarget ?? "-"}/${b.repetitionsForTarget ?? "-"}\n`,
    );
  }
  process.stdout.write(`wrote ${out}\n`);
}

main();
