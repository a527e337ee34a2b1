import type { LineBatch } from "../../src/core/record.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import type { StructuredOptions } from "../../src/transforms/tag.js";

export const CUID = "0190f3a2-7c1e-7d55-9a2b-3c4d5e6f7a8b";

export function structured(fields: Record<string, string> = {}): StructuredOptions {
  return {
    identity: { cuid: CUID, svc: "api.shop.svc.cluster.local" },
    requestIds: new RequestIdExtractor(),
    fields,
  };
}

/** Lines `line <i>` for i in [from, to): offsets are line numbers × 100 so a line's identity is its index. */
export function batchOf(from: number, to: number, opts: { inputId?: string; pad?: number } = {}): LineBatch {
  const lines = [];
  const pad = opts.pad ? ` ${"x".repeat(opts.pad)}` : "";
  for (let i = from; i < to; i++)
    lines.push({
      bytes: Buffer.from(`line ${i} request_id=req-${i % 7}${pad}`),
      offset: i * 100,
      time: 1_700_000_000_123 + i,
    });
  return {
    stream: { key: "file:0:app.log", path: "/var/log/app/app.log", relPath: "app.log", channel: "file" },
    lines,
    inputId: opts.inputId ?? "2049:1234",
    endOffset: to * 100,
    endPart: 0,
    readAt: 1_700_000_000_000,
  };
}

/** Index of each stored `line <i>` message; throws on anything else. */
export function indexes(messages: unknown[]): number[] {
  return messages.map((m) => {
    const r = /^line (\d+) /.exec(String(m));
    if (!r) throw new Error(`unexpected message ${String(m)}`);
    return Number(r[1]);
  });
}

/** Checks that `got` holds 0..n-1 exactly once each; returns missing and duplicated indexes. */
export function exactlyOnce(got: number[], n: number): { missing: number[]; duplicated: number[] } {
  const seen = new Map<number, number>();
  for (const i of got) seen.set(i, (seen.get(i) ?? 0) + 1);
  const missing: number[] = [];
  const duplicated: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = seen.get(i) ?? 0;
    if (c === 0) missing.push(i);
    if (c > 1) duplicated.push(i);
  }
  for (const k of seen.keys()) if (k < 0 || k >= n) duplicated.push(k);
  return { missing, duplicated };
}
