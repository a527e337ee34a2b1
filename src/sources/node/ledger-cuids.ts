import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isUuid } from "../../core/cuid.js";

/**
 * The CUIDs the CUID ledger (`<state-dir>/ledger.jsonl`, src/store/ledger.ts) recorded for container instances
 * in node mode, by instance key (pod/<uid>/<container>/<restart>, docker/<id>): a second, independent record,
 * so an instance whose line in node-cuids.jsonl was lost keeps its CUID.
 */
export function ledgerInstanceCuids(stateDir: string): Map<string, { cuid: string; created_at: string }> {
  const out = new Map<string, { cuid: string; created_at: string }>();
  let text: string;
  try {
    text = readFileSync(join(stateDir, "ledger.jsonl"), "utf8");
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    if (!line.startsWith('{"event":"start"')) continue;
    let ev: Record<string, unknown>;
    try {
      ev = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (!isUuid(ev.cuid) || typeof ev.started_at !== "string") continue;
    const key =
      typeof ev.pod_uid === "string" && typeof ev.container === "string" && typeof ev.restart === "number"
        ? `pod/${ev.pod_uid}/${ev.container}/${ev.restart}`
        : typeof ev.container_id === "string"
          ? `docker/${ev.container_id}`
          : undefined;
    // The first start of an instance names its CUID.
    if (key && !out.has(key)) out.set(key, { cuid: ev.cuid, created_at: ev.started_at });
  }
  return out;
}
