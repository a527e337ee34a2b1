/**
 * Paired per-repetition statistics for the overhead benchmark: the relative difference of a condition's
 * latency percentile to the no-agent trial of the same repetition, with a seeded percentile-bootstrap 95%
 * confidence interval of its median. With the no-agent p50 moving ±20% between repetitions, a ratio of
 * medians cannot resolve a few percent; pairing removes the drift the two trials of one repetition share.
 */
import { seededRandom } from "../test/helpers/seeded-random.js";

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface BootstrapInterval {
  /** number of paired repetitions */
  n: number;
  median: number;
  low: number;
  high: number;
  halfWidth: number;
  /** repetitions that would bring the half-width to `targetHalfWidth`, assuming it shrinks as 1/√n */
  repetitionsForTarget: number | null;
}

/** Percentile bootstrap of the median of `xs` (95% by default), `resamples` draws, seeded. */
export function bootstrapMedian(
  xs: readonly number[],
  opts: { resamples?: number; seed?: number; level?: number; targetHalfWidth?: number } = {},
): BootstrapInterval | null {
  if (xs.length < 2) return null;
  const resamples = opts.resamples ?? 10_000;
  const level = opts.level ?? 0.95;
  const rand = seededRandom(opts.seed ?? 1);
  const draws = new Float64Array(resamples);
  const sample = new Array<number>(xs.length);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < xs.length; i++) sample[i] = xs[Math.floor(rand() * xs.length)]!;
    draws[r] = median(sample);
  }
  draws.sort();
  const at = (q: number) => draws[Math.min(resamples - 1, Math.max(0, Math.floor(q * resamples)))]!;
  const low = at((1 - level) / 2);
  const high = at(1 - (1 - level) / 2);
  const halfWidth = (high - low) / 2;
  const target = opts.targetHalfWidth;
  return {
    n: xs.length,
    median: median(xs),
    low,
    high,
    halfWidth,
    repetitionsForTarget:
      target && halfWidth > 0 ? Math.max(xs.length, Math.ceil(xs.length * (halfWidth / target) ** 2)) : null,
  };
}

export interface PairedTrial {
  condition: string;
  rate: number;
  rep: number;
  p50: number | null;
  p99: number | null;
}

/** Relative differences `condition / baseline - 1` of one percentile, paired by repetition. */
export function pairedDifferences(
  trials: readonly PairedTrial[],
  condition: string,
  rate: number,
  key: "p50" | "p99",
  baseline = "none",
): number[] {
  const out: number[] = [];
  for (const t of trials) {
    if (t.condition !== condition || t.rate !== rate) continue;
    const b = trials.find((x) => x.condition === baseline && x.rate === rate && x.rep === t.rep);
    const v = t[key];
    const bv = b?.[key];
    if (v && bv) out.push(v / bv - 1);
  }
  return out;
}
