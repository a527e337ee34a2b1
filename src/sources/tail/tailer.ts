import type { Stats } from "node:fs";
import { type FileHandle, lstat, open, realpath, stat } from "node:fs/promises";
import { relative, resolve, sep } from "node:path";
import picomatch from "picomatch";
import type { InputState } from "../../core/checkpoint.js";
import { errorMessage } from "../../core/errors.js";
import type { StreamInfo } from "../../core/record.js";
import { metrics } from "../../observe/metrics.js";
import { CopyAdoption } from "./copy-adoption.js";
import { FileReader } from "./file-reader.js";
import { FolderWatcher } from "./folder-watcher.js";
import { PathQueue } from "./path-queue.js";
import { ReadSlots } from "./read-slots.js";
import { type RecoveryContext, recoverRotatedAtStart } from "./restart-recovery.js";
import { fileIdsIn, idOf } from "./rotated-files.js";
import { startsWith } from "./same-content.js";
import type { AdoptAt } from "./tail-context.js";
import type { TailerOptions } from "./tailer-options.js";
import { WriteAheadBudget } from "./write-ahead.js";

export type { TailerOptions } from "./tailer-options.js";

/**
 * Watches folders recursively and keeps one FileReader per file identity (device + inode), never per name:
 * - a name that now points to another inode means its old file was rotated away: the old reader reads to the
 *   end, lingers, emits its unterminated last line and finishes; the new file starts at 0 on the same stream;
 * - an inode already read under one name is never read again under another (rename rotation);
 * - a file smaller than what was read was truncated (copytruncate): it restarts at 0;
 * - a deleted file is read to its end through the open descriptor.
 * Folder watches (native inotify, or chokidar with --watcher chokidar) trigger checks; a periodic rescan of known
 * files and folders is the safety net for missed events.
 */
export class Tailer implements RecoveryContext {
  readonly roots: string[];
  private readonly isIncluded: (rel: string) => boolean;
  private readonly isExcluded: (rel: string) => boolean;
  private readonly byInode = new Map<string, FileReader>();
  private readonly byPath = new Map<string, FileReader>();
  private readonly checks = new PathQueue((path, e) => {
    metrics.errors.inc({ kind: "read" });
    this.opts.log.error({ path, err: errorMessage(e) }, "check failed");
  });
  private readonly reported = new Set<string>();
  private readonly finishedInodes = new Set<string>();
  private readonly folders: FolderWatcher;
  private pollCount = 0;
  private poller: NodeJS.Timeout | undefined;
  private initialScanDone = false;
  private stopped = false;
  private readonly slots: ReadSlots;
  /** Shared by every file's reader (undefined: the sinks need each batch accepted before the next). */
  private readonly writeAhead: WriteAheadBudget | undefined;
  /** Inputs as checkpointed at start, before the first scan re-decides any of them. */
  readonly inputsAtStart: Record<string, InputState>;
  /** Inputs resumed at start with matching first bytes (their file was not truncated while we were down). */
  readonly resumedAtStart = new Set<string>();
  /** Checkpoints that did not match their file at start: warned about unless a rotated copy explains them. */
  readonly startMismatches = new Map<string, { path: string; reason: string; offset: number }>();
  private readonly adoption = new CopyAdoption(this);
  /** Readers opened before the files rotated away while the agent was down are drained wait for this. */
  private startGate: Promise<void> | undefined;
  private releaseStart: (() => void) | undefined;
  /** A stream path whose previous file was rotated away: its reading to the end, before the successor reads. */
  private readonly predecessors = new Map<string, Promise<void>>();
  ready = false;

  constructor(readonly opts: TailerOptions) {
    this.slots = new ReadSlots(opts.maxConcurrentReads ?? 32);
    if (opts.writeAheadBytes) this.writeAhead = new WriteAheadBudget(opts.writeAheadBytes);
    this.inputsAtStart = structuredClone({ ...opts.checkpoints.inputs() });
    this.startGate = new Promise<void>((r) => {
      this.releaseStart = r;
    });
    this.roots = opts.roots.map((r) => resolve(r));
    this.folders = new FolderWatcher(this.roots, {
      watcher: opts.watcher,
      log: opts.log,
      stopped: () => this.stopped,
      rootOf: (p) => this.rootOf(p),
      wanted: (p) => this.wanted(p),
      reportOnce: (k, kind, msg, extra) => this.reportOnce(k, kind, msg, extra),
      check: (p) => this.check(p),
      entryEvent: (path, changeOnly) => {
        // Content changed in a file already open under this name: just read on (the reader finds truncation
        // itself). Creation, deletion and renames get the full identity check.
        const r = changeOnly ? this.byPath.get(path) : undefined;
        if (r) this.kickSoon(r);
        else void this.check(path);
      },
    });
    this.isIncluded = picomatch(opts.include as string[], { dot: true });
    this.isExcluded = opts.exclude.length ? picomatch(opts.exclude as string[], { dot: true }) : () => false;
  }

  get filesOpen(): number {
    return this.byInode.size;
  }

  /** Reads waiting for a read slot now (at most one per reader). */
  get readsWaiting(): number {
    return this.slots.waiting;
  }

  lagBytes(): number {
    let n = 0;
    for (const r of this.byInode.values()) n += r.lagBytes;
    return n;
  }

  rootOf(path: string): number {
    return this.roots.findIndex((r) => path === r || path.startsWith(r + sep));
  }

  private wanted(path: string): { root: number; rel: string } | undefined {
    const root = this.rootOf(path);
    if (root < 0) return undefined;
    const rel = relative(this.roots[root]!, path);
    if (!rel || !this.isIncluded(rel) || this.isExcluded(rel) || this.opts.skip?.(path)) return undefined;
    return { root, rel };
  }

  private reportOnce(key: string, kind: string, msg: string, extra: Record<string, unknown>): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    metrics.errors.inc({ kind });
    this.opts.log.warn({ kind, ...extra }, msg);
  }

  async start(): Promise<void> {
    for (const r of this.roots) {
      const st = await stat(r).catch(() => undefined);
      if (!st?.isDirectory())
        this.opts.log.warn(
          { folder: r },
          "watched folder does not exist (yet); files created there later are picked up",
        );
    }
    await this.folders.start();
    await this.checks.settled();
    this.initialScanDone = true;
    const { drained } = await recoverRotatedAtStart(this, this.adoption);
    const release = this.releaseStart;
    void drained.finally(() => {
      this.startGate = undefined;
      release?.();
    });
    this.ready = true;
    // Not unref'd: with no folder to watch yet (a root made later) the poller is what keeps the agent running.
    this.poller = setInterval(() => void this.poll(), this.opts.pollMs);
  }

  private withSlot<T>(fn: () => Promise<T>): Promise<T> {
    return this.slots.run(fn);
  }

  /** A change event: read after --read-delay (events meanwhile join the same read). */
  private kickSoon(r: FileReader): void {
    const delay = this.opts.readDelayMs ?? 0;
    if (delay <= 0 || this.stopped) {
      this.kick(r);
      return;
    }
    if (r.kickTimer) return;
    r.kickTimer = setTimeout(() => {
      r.kickTimer = undefined;
      this.kick(r);
    }, delay);
  }

  private kick(r: FileReader): void {
    void this.read(r);
  }

  /** Reads `r` to its current end once its gate (a predecessor draining) is open; never rejects. */
  read(r: FileReader): Promise<void> {
    // One queued read per reader: it starts later, so it covers what is there now. (Without this every poll added
    // one more queued read per file, and a starved machine's queue grew without end.)
    if (r.readQueued) return r.readQueued;
    let started = false;
    let queued: Promise<void> | undefined;
    const go = () =>
      this.withSlot(() => {
        // From here on, news waits for the next read (or joins this one: FileReader.kick coalesces).
        started = true;
        if (r.readQueued === queued) r.readQueued = undefined;
        return r.kick();
      }).catch((e) => this.readFailed(r, e));
    const gate = r.gate;
    queued = gate
      ? gate.then(() => {
          r.gate = undefined;
          return go();
        })
      : go();
    if (!started) r.readQueued = queued;
    return queued;
  }

  private readFailed(r: FileReader, e: unknown): void {
    if (this.stopped) return;
    metrics.errors.inc({ kind: "read" });
    this.opts.log.error(
      { path: r.stream.path, err: errorMessage(e) },
      "reading failed; will retry on the next change",
    );
  }

  /** Decides what a path's current state means. Serialised per path. */
  check(path: string): Promise<void> {
    return this.checks.run(path, () => this.checkNow(path));
  }

  private async checkNow(path: string, retries = 0): Promise<void> {
    if (this.stopped) return;
    const where = this.wanted(path);
    if (!where) return this.folders.folderEvent(path);
    let st: Stats;
    try {
      const l = await lstat(path);
      if (l.isDirectory()) return this.folders.folderEvent(path);
      if (l.isSymbolicLink()) {
        const target = await realpath(path);
        if (this.opts.skip?.(target)) return; // a link to the agent's own output
        if (this.rootOf(target) < 0) {
          this.reportOnce(
            `symlink:${path}`,
            "symlink_escape",
            "symlink leads outside the watched folders; not followed",
            {
              path,
              target,
              code: "IKON_ERR_SYMLINK_ESCAPE",
            },
          );
          return;
        }
      }
      st = l.isSymbolicLink() ? await stat(path) : l;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return this.gone(path);
      this.reportOnce(`stat:${path}`, code === "EACCES" ? "permission" : "read", "cannot stat file", {
        path,
        err: errorMessage(e),
      });
      return;
    }
    if (!st.isFile()) return;
    const id = idOf(st);
    const bound = this.byPath.get(path);
    if (bound && bound.inputId !== id) {
      metrics.rotations.inc({ kind: "rename" });
      this.byPath.delete(path);
      this.detach(bound);
    }
    let r = this.byInode.get(id);
    if (!r) {
      // A finished inode number may have been reused by a new file (ext4 reuses numbers quickly): openReader
      // compares the first bytes' digest with the checkpoint and skips only the same, finished file.
      const opened = await this.openReader(path, where.root, where.rel, id);
      // The name was rotated again between stat and open: decide again on what it is now.
      if (opened === "moved") return retries < 3 ? this.checkNow(path, retries + 1) : undefined;
      if (!opened) return;
      // Another name of the same file (a symlink, a hard link) was opened meanwhile by a concurrent check of that
      // name: one reader per file, else its lines go out twice (seen with --watcher poll on a loaded machine).
      const other = this.byInode.get(id);
      if (other) {
        await opened.close();
        r = other;
      } else {
        r = opened;
        this.register(r, path);
        // Order within a stream: the file rotated away under this name is read to its end first.
        const before = this.predecessors.get(path);
        if (before) r.gate = before;
        else if (this.startGate) r.gate = this.startGate;
      }
    }
    if (r.stream.path !== path) return; // the same file under a second name (rename rotation, hard link): read once
    r.knownSize = st.size;
    // Unchanged since the last look (size = what was read, same mtime): no read, so an idle file costs one lstat
    // per poll, not two reads and an fstat. A rewrite to the same size changes the mtime.
    if (st.size === r.position && st.mtimeMs === r.seenMtimeMs) return;
    r.seenMtimeMs = st.mtimeMs;
    // A size below what was read may be a stale stat (the reader went on meanwhile); the reader itself decides
    // truncation from fstat right after a read hit the end.
    this.kick(r);
  }

  /**
   * Opens `path` (known by stat as inode `id`) at its checkpointed offset, or at `at` (a copy adopted at the
   * offset of the content it copies). Returns "moved" when the name meanwhile points to another inode (rotated
   * between stat and open): binding the new file to the old file's checkpoint would read it twice.
   */
  async openReader(
    path: string,
    root: number,
    rel: string,
    id: string,
    adopt?: AdoptAt,
  ): Promise<FileReader | "moved" | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return "moved";
      this.reportOnce(
        `open:${id}`,
        code === "EACCES" || code === "EPERM" ? "permission" : "read",
        "cannot open file; skipping it",
        {
          path,
          err: errorMessage(e),
          code: "IKON_ERR_SOURCE_READ",
        },
      );
      return undefined;
    }
    this.reported.delete(`open:${id}`);
    const now = await fh.stat().catch(() => undefined);
    if (!now || idOf(now) !== id) {
      await fh.close().catch(() => undefined);
      return "moved";
    }
    let offset = adopt?.offset ?? 0;
    let part = adopt?.part ?? 0;
    let resumed = false;
    let shorter = false;
    const cp = adopt ? undefined : this.opts.checkpoints.input(id);
    if (cp) {
      // Same inode number: is it still the same file? Compare the digest of its first bytes.
      if (await startsWith(fh, now.size, cp)) {
        if (cp.finished) {
          this.finishedInodes.add(id);
          await fh.close();
          return undefined;
        }
        offset = cp.offset;
        part = cp.part;
        resumed = true;
        shorter = offset > now.size;
        if (!this.initialScanDone && !shorter) this.resumedAtStart.add(id);
      } else {
        this.opts.checkpoints.forget(id);
        if (!cp.finished) this.mismatch(id, path, cp.offset, "its first bytes differ from the checkpoint's");
      }
    }
    if (!resumed && !adopt && !this.initialScanDone && this.opts.readFrom === "tail") offset = now.size;
    let info: StreamInfo = {
      key: `file:${root}:${rel}`,
      path: adopt?.streamPath ?? path,
      relPath: rel,
      channel: "file",
    };
    if (this.opts.streamFor) info = this.opts.streamFor(info);
    const r = new FileReader(
      id,
      info,
      fh,
      offset,
      part,
      this.opts.maxLineBytes,
      (batch, reader, after) =>
        this.opts.submit(
          batch,
          {
            stream: reader.stream.key,
            path: reader.stream.path,
            fp: reader.fp,
            fpLen: reader.fpLen,
            finished: reader.finished || undefined,
          },
          after,
        ),
      this.opts.decoderFor?.(info),
    );
    r.knownSize = now.size;
    r.writeAhead = this.writeAhead;
    if (!adopt) r.onTruncate = (from) => this.adoption.truncated(r, from, shorter ? cp : undefined);
    // The mark that matched this file stays its mark: a second look at its first bytes could already see the
    // next generation (truncated meanwhile), and the copy of what we read would then never be found.
    const mark = resumed ? cp : adopt?.mark;
    if (offset > 0 && mark?.fp) r.setMark(mark);
    else if (offset > 0) await r.updateFingerprint();
    if (shorter) {
      // Shorter than the checkpointed offset: truncated while we were down. Handled as a truncation (a copy
      // made by copytruncate carries on from the offset) at the first read.
      r.markTruncated();
    }
    return r;
  }

  private register(r: FileReader, path: string): void {
    this.byInode.set(r.inputId, r);
    this.byPath.set(path, r);
    metrics.filesWatched.set(this.byInode.size);
  }

  /** Whether an inode is read now or was read to its end (never adopted again). */
  taken = (id: string): boolean =>
    this.byInode.has(id) || this.finishedInodes.has(id) || this.opts.checkpoints.input(id)?.finished === true;

  markFinished(id: string): void {
    this.finishedInodes.add(id);
  }

  currentPaths(): string[] {
    return [...this.byPath.keys()];
  }

  isOpen(id: string): boolean {
    return this.byInode.has(id);
  }

  registerDetached(r: FileReader): void {
    r.detachedAt = Date.now();
    this.byInode.set(r.inputId, r);
    metrics.filesWatched.set(this.byInode.size);
  }

  async finishCopy(r: FileReader): Promise<void> {
    await this.withSlot(() => r.finish(true)).catch((e) => this.readFailed(r, e));
    this.finishedInodes.add(r.inputId);
  }

  /** A checkpoint that does not match its file: at start, reported unless a rotated copy explains it. */
  private mismatch(id: string, path: string, offset: number, reason: string): void {
    if (!this.initialScanDone) this.startMismatches.set(id, { path, reason, offset });
    else this.warnMismatch(path, reason, offset);
  }

  warnMismatch(path: string, reason: string, offset: number): void {
    metrics.errors.inc({ kind: "checkpoint_mismatch" });
    this.opts.log.warn(
      { path, checkpointOffset: offset, reason, code: "IKON_ERR_CHECKPOINT_MISMATCH" },
      "checkpoint does not match the file: reading it from the start (if it is the same content, its lines go out again)",
    );
  }

  private gone(path: string): void {
    const r = this.byPath.get(path);
    if (!r) return;
    metrics.rotations.inc({ kind: "delete" });
    this.byPath.delete(path);
    this.detach(r);
  }

  /** The file left its name (renamed or deleted): read it to its end; a successor under the name waits for that. */
  private detach(r: FileReader): void {
    if (r.detachedAt === undefined) r.detachedAt = Date.now();
    const path = r.stream.path;
    const drained = this.read(r);
    this.predecessors.set(path, drained);
    void drained.then(() => {
      if (this.predecessors.get(path) === drained) this.predecessors.delete(path);
    });
  }

  /** Finishes a reader: final read, unterminated last line, checkpoint `finished`, close. */
  private async finishReader(r: FileReader): Promise<void> {
    // Once per reader: the poll sees a lingering reader on every tick until its finish has run.
    if (this.finishing.has(r)) return;
    this.finishing.add(r);
    try {
      await this.withSlot(() => r.finish());
    } finally {
      this.finishing.delete(r);
    }
    // Its descriptor is closed now, so the inode number may already belong to a new file (ext4 reuses numbers at
    // once): only this reader's own entries are removed, never a newer reader's.
    const holder = this.byInode.get(r.inputId);
    if (holder !== undefined && holder !== r) return;
    this.byInode.delete(r.inputId);
    if (this.byPath.get(r.stream.path) === r) this.byPath.delete(r.stream.path);
    this.finishedInodes.add(r.inputId);
    metrics.filesWatched.set(this.byInode.size);
  }

  private readonly finishing = new Set<FileReader>();

  private async poll(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    for (const path of [...this.byPath.keys()]) void this.check(path);
    // Folders without a watch: try again, else list them; now and then re-list all (lost events).
    this.folders.poll(++this.pollCount % 10 === 0);
    if (this.pollCount % 60 === 0) void this.forgetVanishedFinished();
    for (const r of [...this.byInode.values()]) {
      if (r.detachedAt === undefined) continue;
      this.kick(r);
      if (now - Math.max(r.detachedAt, r.lastGrowth) >= this.opts.lingerMs && !r.finished) {
        void this.finishReader(r).catch((e) => this.readFailed(r, e));
      }
    }
    this.opts.checkpoints && metrics.lagBytes.set(this.lagBytes());
  }

  /**
   * Finished files stay in the checkpoint while they exist (so a restart never reads them again under a rotated
   * name); once their inode is in none of the watched folders, they are forgotten, so the checkpoint stays small.
   */
  private async forgetVanishedFinished(): Promise<void> {
    const finished = Object.entries(this.opts.checkpoints.inputs()).filter(([, s]) => s.finished);
    if (finished.length === 0) return;
    const seen = await fileIdsIn(this.folders.folders());
    for (const [id] of finished) {
      if (seen.has(id)) continue;
      this.opts.checkpoints.forget(id);
      this.finishedInodes.delete(id);
    }
  }

  /** Stops watching, reads every open file to its current end, and closes them (SIGTERM). */
  async stop(drain = true): Promise<void> {
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
    await this.folders.stop();
    await this.checks.settled();
    const readers = [...this.byInode.values()];
    for (const r of readers) clearTimeout(r.kickTimer);
    if (drain) await Promise.allSettled(readers.map((r) => this.withSlot(() => r.kick())));
    await Promise.allSettled(readers.map((r) => r.close()));
  }
}
