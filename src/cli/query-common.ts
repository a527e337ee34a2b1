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

export const dash = (v: string | undefined): string => (v === undefined || v === "" ? "-" : v);

export function oneLine(r: LogRecord): string {
  return r.message.replace(/[\r\n]+/g, " ");
}

/** Exit code 1 with a note on stderr when a query found nothing (like grep). */
export function nothingFound(what: string): void {
  process.stderr.write(`ikontainer: ${what}\n`);
  process.exitCode = 1;
}
