import { join } from "node:path";
import type { Command } from "commander";
import { esConnection, QUERY_SETTINGS } from "../config/elasticsearch.js";
import { addSettingOptions, resolveSettings } from "../config/settings.js";
import { parseTime } from "../config/units.js";
import { EsStore } from "../store/elasticsearch.js";
import { LocalStore } from "../store/local.js";
import { MultiStore } from "../store/multi.js";
import type { LogRecord, Store } from "../store/query.js";

/** Shared by logs, trace and whois: where to read (local store or --es) and how to print. */
export function addQueryOptions(cmd: Command): Command {
  return addSettingOptions(cmd, QUERY_SETTINGS).option("--json", "machine-readable output (JSON)");
}

export function openStore(flags: Record<string, unknown>): Store {
  const s = resolveSettings(QUERY_SETTINGS, flags);
  if (s.es) return new EsStore(esConnection(s.es as string, s), s.esIndexPrefix as string);
  const stateDirs = s.stateDir as string[];
  const extra = s.store as string[] | undefined;
  // one state dir: its store (or --store); several: each with its own store and ledger, read as one
  if (stateDirs.length <= 1) {
    const stateDir = stateDirs[0] ?? "./ikontainer-state";
    return new LocalStore(extra ?? [join(stateDir, "store")], stateDir);
  }
  const stores = stateDirs.map((d) => new LocalStore([join(d, "store")], d));
  if (extra) stores.push(new LocalStore(extra, stateDirs[0]!));
  return new MultiStore(stores);
}

export const timeFlag = (v: unknown, setting: string): number | undefined =>
  v === undefined ? undefined : parseTime(String(v), setting);

/** Left-aligned columns; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[fmt(header), ...rows.map(fmt)].join("\n")}\n`;
}

/**
 * The same table for a stream of rows of any length: column widths come from the first `sample` rows (later,
 * wider cells just push their row's remaining columns right), so memory does not grow with the row count.
 */
export class TableWriter {
  private held: string[][] = [];
  private widths: number[] | undefined;

  constructor(
    private readonly header: string[],
    private readonly out: (text: string) => Promise<void>,
    private readonly sample = 1000,
  ) {}

  rows = 0;

  async add(row: string[]): Promise<void> {
    this.rows++;
    if (this.widths) return this.out(this.fmt(row));
    this.held.push(row);
    if (this.held.length >= this.sample) await this.flushHeld();
  }

  async end(): Promise<void> {
    if (!this.widths && this.held.length > 0) await this.flushHeld();
  }

  private async flushHeld(): Promise<void> {
    const widths = this.header.map((h) => h.length);
    for (const r of this.held)
      for (let i = 0; i < r.length; i++) widths[i] = Math.max(widths[i] ?? 0, r[i]!.length);
    this.widths = widths;
    let text = this.fmt(this.header);
    for (const r of this.held) text += this.fmt(r);
    this.held = [];
    await this.out(text);
  }

  private fmt(r: string[]): string {
    const w = this.widths!;
    return `${r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!)))
      .join("  ")
      .trimEnd()}\n`;
  }
}

/** Writes to stdout, waiting when the pipe is full (so a huge result never piles up in memory). */
export function writeOut(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (process.stdout.write(text)) resolve();
    else {
      const onError = (e: Error) => reject(e);
      process.stdout.once("error", onError);
      process.stdout.once("drain", () => {
        process.stdout.off("error", onError);
        resolve();
      });
    }
  });
}

// C0 controls (ESC among them), DEL, C1 controls, and the bidirectional overrides that can reorder a terminal line
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text output shows what an application wrote but must not let it drive the terminal: control characters
 * come out escaped (`\x1b`, `\u202e`); CR/LF runs become one space so a record stays on one line.
 */
export function escapeControls(s: string): string {
  return s.replace(/[\r\n]+/g, " ").replace(CONTROL, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`;
  });
}

export const dash = (v: string | undefined): string =>
  v === undefined || v === "" ? "-" : escapeControls(v);

export function oneLine(r: LogRecord): string {
  return escapeControls(r.message);
}

/** Exit code 1 with a note on stderr when a query found nothing (like grep). */
export function nothingFound(what: string): void {
  process.stderr.write(`ikontainer: ${what}\n`);
  process.exitCode = 1;
}
