import { relative } from "node:path";
import type { InputState } from "../../core/checkpoint.js";
import { metrics } from "../../observe/metrics.js";
import type { CopyAdoption } from "./copy-adoption.js";
import { FileReader } from "./file-reader.js";
import { findRotatedAtStart, type RotatedFile } from "./rotated-files.js";
import type { TailContext } from "./tail-context.js";

/** What restart recovery needs beyond the shared context: the state of the first scan. */
export interface RecoveryContext extends TailContext {
  /** Inputs as checkpointed at start, before the first scan re-decided any of them. */
  readonly inputsAtStart: Readonly<Record<string, InputState>>;
  /** Inputs resumed at start with matching first bytes (their file was not truncated while we were down). */
  readonly resumedAtStart: ReadonlySet<string>;
  /** Checkpoints that did not match their file at start: warned about unless a rotated copy explains them. */
  readonly startMismatches: Map<string, { path: string; reason: string; offset: number }>;
  /** Paths open now (the files found by the first scan). */
  currentPaths(): string[];
  isOpen(id: string): boolean;
  /** Registers a rotated file (no longer under its name): read to its end, linger, finish. */
  registerDetached(r: FileReader): void;
  /** Reads a reader to its end (in a read slot); never rejects. */
  read(r: FileReader): Promise<void>;
  /** Reads an adopted copy to its end and finishes it (in a read slot); never rejects. */
  finishCopy(r: FileReader): Promise<void>;
}

/**
 * After a restart, files of a known stream may sit under rotated names we do not include (app.log → app.log.1).
 * Each is adopted only for what was not delivered yet (see rotated-files.ts): the checkpointed inode resumes at
 * its offset, a copytruncate copy of checkpointed content at that content's offset, and only content never
 * seen (modified after `ownedSince`) from 0. Resolves with a promise that settles once they are read, oldest
 * first, to their ends: the files found at start read on only then (order within a stream).
 */
export async function recoverRotatedAtStart(
  t: RecoveryContext,
  adoption: CopyAdoption,
): Promise<{ drained: Promise<void> }> {
  const streams = new Set<string>();
  for (const s of Object.values(t.inputsAtStart)) streams.add(s.path);
  // Also the files found now: their stream may have rotated while the agent was down before it read anything.
  const current = t.currentPaths();
  for (const p of current) streams.add(p);
  const found = await findRotatedAtStart(streams, new Set(current), {
    inputsAtStart: t.inputsAtStart,
    taken: (id) => t.taken(id),
    resumed: t.resumedAtStart,
    ownedSince: t.opts.ownedSince,
  });
  const explained = new Set<string>();
  const opened: Array<{ r: FileReader; f: RotatedFile }> = [];
  for (const f of found) {
    const r = await openRotated(t, adoption, f);
    if (!r) continue;
    if (f.copyOf) explained.add(f.copyOf);
    opened.push({ r, f });
    t.opts.log.info(
      { path: f.path, stream: f.streamPath, kind: f.kind, offset: r.offset },
      "reading a rotated file left from before the restart",
    );
  }
  for (const [id, m] of t.startMismatches) {
    if (explained.has(id)) {
      metrics.rotations.inc({ kind: "truncate" });
      t.opts.log.info(
        { path: m.path, checkpointOffset: m.offset },
        "file was truncated (copytruncate) while the agent was down: its copy carries on from the checkpoint",
      );
    } else t.warnMismatch(m.path, m.reason, m.offset);
  }
  t.startMismatches.clear();
  // Unfinished inputs whose file is gone for good: nothing left to read.
  const cp = t.opts.checkpoints;
  for (const [id, s] of Object.entries(cp.inputs()))
    if (!s.finished && !t.isOpen(id) && !opened.some((o) => o.r.inputId === id)) cp.forget(id);
  // Oldest first, each to its end (copies to their finish); then the files found at start read on.
  const drained = (async () => {
    for (const { r, f } of opened) {
      if (f.kind === "copy") await t.finishCopy(r);
      else {
        t.registerDetached(r);
        await t.read(r);
      }
    }
  })();
  return { drained };
}

/** Opens a rotated file found at start where its classification says. */
async function openRotated(
  t: RecoveryContext,
  adoption: CopyAdoption,
  f: RotatedFile,
): Promise<FileReader | undefined> {
  const root = t.rootOf(f.streamPath);
  if (root < 0) return undefined;
  if (f.kind === "copy") return adoption.adopt(f.streamPath, f, f.at!);
  const r = await t.openReader(f.path, root, relative(t.roots[root]!, f.streamPath), f.id, {
    offset: f.at?.offset ?? 0,
    part: f.at?.part ?? 0,
    streamPath: f.streamPath,
    mark: f.at?.mark,
  });
  return r instanceof FileReader ? r : undefined;
}
