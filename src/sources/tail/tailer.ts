import { type FSWatcher as FsWatcher, watch as fsWatch, type Stats, statSync } from "node:fs";
import { type FileHandle, lstat, open, readdir, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import type { FSWatcher } from "chokidar";
import picomatch from "picomatch";
import type { CheckpointStore } from "../../core/checkpoint.js";
import { errorMessage } from "../../core/errors.js";
import type { LineBatch, StreamInfo } from "../../core/record.js";
import type { Logger } from "../../observe/logger.js";
import { metrics } from "../../observe/metrics.js";
import { FileReader, fingerprint, type LineDecoder } from "./file-reader.js";

export interface TailerOptions {
  roots: readonly string[];
  include: readonly string[];
  exclude: readonly string[];
  maxLineBytes: number;
  lingerMs: number;
  pollMs: number;
  /** Wait after a change event before reading, so that lines written close together are read at once. */
  readDelayMs?: number;
  readFrom: "head" | "tail";
  checkpoints: CheckpointStore;
  log: Logger;
  /** Hands a batch to the pipeline; resolves when every sink accepted it (backpressure). */
  submit: (
    batch: LineBatch,
    input: { stream: string; path: string; fp?: string; fpLen?: number; finished?: boolean },
  ) => Promise<void>;
  /** Node mode: per-file stream identity (CUID/svc/fields per container instance). */
  streamFor?: (info: StreamInfo) => StreamInfo;
  /** Node mode: per-file decoder (CRI / Docker json-file). */
  decoderFor?: (info: StreamInfo) => LineDecoder | undefined;
  /**
   * Since when (ms) this container instance's lines are ours: rotated files of a known stream modified after it
   * and never read (the agent was down while they were written and rotated) are read at start.
   */
  ownedSince?: number;
  /** How folders are found: native inotify watches (default) or chokidar. */
  watcher?: "inotify" | "chokidar";
  /** Paths never read (the agent's own outputs and state inside a watched folder; see src/cli/own-output.ts). */
  skip?: (path: string) => boolean;
  /** Reads at once, at most (bounds memory with thousands of files). */
  maxConcurrentReads?: number;
}

const idOf = (st: Stats) => `${st.dev}:${st.ino}`;
const COMPRESSED = /\.(gz|bz2|xz|zst|zip|lz4)$/;

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
export class Tailer {
  private readonly roots: string[];
  private readonly isIncluded: (rel: string) => boolean;
  private readonly isExcluded: (rel: string) => boolean;
  private readonly byInode = new Map<string, FileReader>();
  private readonly byPath = new Map<string, FileReader>();
  private readonly opening = new Map<string, Promise<void>>();
  private readonly reported = new Set<string>();
  private readonly finishedInodes = new Set<string>();
  private watcher: FSWatcher | undefined;
  private readonly dirWatchers = new Map<string, FsWatcher>();
  /** The identity (device + inode) of each watched folder when its watch was made. */
  private readonly dirIds = new Map<string, string>();
  /** Folders the kernel would not watch (inotify limit, permission): listed on every poll instead. */
  private readonly polledDirs = new Set<string>();
  private scans: Promise<void>[] = [];
  private pollCount = 0;
  private poller: NodeJS.Timeout | undefined;
  private initialScanDone = false;
  private stopped = false;
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  ready = false;

  constructor(private readonly opts: TailerOptions) {
    this.roots = opts.roots.map((r) => resolve(r));
    this.isIncluded = picomatch(opts.include as string[], { dot: true });
    this.isExcluded = opts.exclude.length ? picomatch(opts.exclude as string[], { dot: true }) : () => false;
  }

  get filesOpen(): number {
    return this.byInode.size;
  }

  lagBytes(): number {
    let n = 0;
    for (const r of this.byInode.values()) n += r.lagBytes;
    return n;
  }

  private rootOf(path: string): number {
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
    if (this.opts.watcher === "chokidar") {
      // chokidar finds the folder tree (recursively, now and later); each folder gets one inotify watch of its
      // own for its files. (chokidar re-reads a folder on every change in it: see --watcher in the README.)
      const { watch } = await import("chokidar"); // loaded only for --watcher chokidar
      this.watcher = watch(this.roots as string[], {
        ignored: (_path: string, st?: Stats) => st !== undefined && !st.isDirectory(),
        followSymlinks: false,
        atomic: false,
        ignoreInitial: false,
        persistent: true,
      });
      this.watcher.on("addDir", (dir) => this.watchDir(dir));
      this.watcher.on("unlinkDir", (dir) => this.unwatchDir(dir));
      this.watcher.on("error", (e) => {
        metrics.errors.inc({ kind: "watch" });
        this.opts.log.warn({ err: errorMessage(e) }, "watcher error");
      });
      await new Promise<void>((res) => this.watcher!.once("ready", () => res()));
    } else {
      // One native inotify watch per folder; a folder's listing finds its subfolders, and a new subfolder
      // shows up as an event in its parent. Watching folders, not files, keeps memory flat with many files.
      for (const r of this.roots) this.watchDir(r);
    }
    // Listings find subfolders, whose listings find theirs: wait until a round adds no new listing (every file
    // present at start is open before the agent reports it is tailing).
    for (let n = 0; n < this.scans.length; ) {
      n = this.scans.length;
      await Promise.all(this.scans);
    }
    await Promise.all(this.opening.values());
    this.scans = [];
    this.initialScanDone = true;
    await this.resumeRotatedFromCheckpoint();
    this.ready = true;
    // Not unref'd: with no folder to watch yet (a root made later) the poller is what keeps the agent running.
    this.poller = setInterval(() => void this.poll(), this.opts.pollMs);
  }

  /**
   * Watches one folder's entries, then checks what is already there (watch first: nothing slips between). A
   * folder that cannot be watched (e.g. ENOSPC: fs.inotify.max_user_watches reached) is listed on every poll
   * instead, and its watch is retried then (`retry`); listings of its parent do not list it again.
   */
  private watchDir(dir: string, retry = false): void {
    if (this.dirWatchers.has(dir) || this.stopped || (this.polledDirs.has(dir) && !retry)) return;
    try {
      const id = idOf(statSync(dir));
      const w = fsWatch(dir, { persistent: true }, (event, name) => {
        if (!name) return void this.scanDir(dir);
        // The folder itself was removed or renamed (inotify reports it under its own name): a folder made again
        // under this path is a new one to watch.
        if (name.toString() === basename(dir)) void this.recheckDir(dir);
        const path = join(dir, name.toString());
        // Content changed in a file already open under this name: just read on (the reader finds truncation
        // itself). Creation, deletion and renames ("rename" events) get the full identity check.
        const r = event === "change" ? this.byPath.get(path) : undefined;
        if (r) this.kickSoon(r);
        else void this.check(path);
      });
      w.on("error", () => {
        w.close();
        this.dirWatchers.delete(dir);
      });
      this.dirWatchers.set(dir, w);
      this.dirIds.set(dir, id);
      if (this.polledDirs.delete(dir)) metrics.foldersPolled.set(this.polledDirs.size);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") {
        if (this.polledDirs.delete(dir)) metrics.foldersPolled.set(this.polledDirs.size);
        return;
      }
      this.reportOnce(
        `dir:${dir}`,
        code === "EACCES" ? "permission" : "watch",
        "cannot watch folder; listing it on every poll instead",
        {
          path: dir,
          err: errorMessage(e),
          code: "IKON_ERR_WATCH",
          hint: code === "ENOSPC" ? "raise fs.inotify.max_user_watches" : undefined,
        },
      );
      this.polledDirs.add(dir);
      metrics.foldersPolled.set(this.polledDirs.size);
    }
    const scan = this.scanDir(dir);
    if (!this.initialScanDone) this.scans.push(scan);
  }

  private unwatchDir(dir: string): void {
    this.dirWatchers.get(dir)?.close();
    this.dirWatchers.delete(dir);
    this.dirIds.delete(dir);
    if (this.polledDirs.delete(dir)) metrics.foldersPolled.set(this.polledDirs.size);
  }

  /** A path that is no file we read: a new subfolder to watch (native watcher), or a folder that is gone. */
  private async folderEvent(path: string): Promise<void> {
    if (this.opts.watcher === "chokidar" || this.rootOf(path) < 0) return;
    const l = await lstat(path).catch(() => undefined);
    if (!l) return this.unwatchDir(path);
    if (l.isDirectory()) this.watchDir(path); // symlinked folders are not followed
  }

  /** A watched folder gone or replaced by another one under the same path: drop its watch, watch the new one. */
  private async recheckDir(dir: string): Promise<void> {
    const st = await stat(dir).catch(() => undefined);
    const watchedId = this.dirIds.get(dir);
    if (watchedId === undefined || (st && idOf(st) === watchedId)) return;
    this.unwatchDir(dir);
    if (st?.isDirectory()) this.watchDir(dir);
  }

  private async scanDir(dir: string): Promise<void> {
    const entries = await readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") this.unwatchDir(dir); // gone: a root is watched again once it exists
      return [];
    });
    // Subfolders are watched from listings too: with chokidar this is the safety net for a folder it missed
    // (e.g. removed and made again quickly); the periodic rescan re-lists every watched folder.
    for (const e of entries) if (e.isDirectory()) this.watchDir(join(dir, e.name));
    await Promise.all(entries.filter((e) => !e.isDirectory()).map((e) => this.check(join(dir, e.name))));
  }

  /** Runs `fn` with a slot of the read semaphore. */
  private async withSlot<T>(fn: () => Promise<T>): Promise<T> {
    const max = this.opts.maxConcurrentReads ?? 32;
    while (this.active >= max) await new Promise<void>((r) => this.waiters.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiters.shift()?.();
    }
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
    void this.withSlot(() => r.kick()).catch((e) => this.readFailed(r, e));
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
    const prev = this.opening.get(path) ?? Promise.resolve();
    const next = prev
      .then(() => this.checkNow(path))
      .catch((e) => {
        metrics.errors.inc({ kind: "read" });
        this.opts.log.error({ path, err: errorMessage(e) }, "check failed");
      });
    this.opening.set(path, next);
    void next.finally(() => {
      if (this.opening.get(path) === next) this.opening.delete(path);
    });
    return next;
  }

  private async checkNow(path: string): Promise<void> {
    if (this.stopped) return;
    const where = this.wanted(path);
    if (!where) return this.folderEvent(path);
    let st: Stats;
    try {
      const l = await lstat(path);
      if (l.isDirectory()) return this.folderEvent(path);
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
      this.detach(bound);
      this.byPath.delete(path);
    }
    let r = this.byInode.get(id);
    if (!r) {
      // A finished inode number may have been reused by a new file (ext4 reuses numbers quickly): openReader
      // compares the first bytes' digest with the checkpoint and skips only the same, finished file.
      const opened = await this.openReader(path, where.root, where.rel, id, st);
      if (!opened) return;
      r = opened;
    }
    if (r.stream.path !== path) return; // the same file under a second name (rename rotation, hard link): read once
    r.knownSize = st.size;
    // A size below what was read may be a stale stat (the reader went on meanwhile); the reader itself decides
    // truncation from fstat right after a read hit the end.
    this.kick(r);
  }

  private async openReader(
    path: string,
    root: number,
    rel: string,
    id: string,
    st: Stats,
  ): Promise<FileReader | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
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
    const cp = this.opts.checkpoints.input(id);
    let offset = 0;
    let part = 0;
    let resumed = false;
    if (cp) {
      // Same inode number: is it still the same file? Compare the digest of its first bytes.
      const len = cp.fpLen ?? 0;
      const buf = Buffer.alloc(len);
      const { bytesRead } = len ? await fh.read(buf, 0, len, 0) : { bytesRead: 0 };
      // An empty fingerprint proves nothing once the file has content: then it is a new file.
      if ((len === 0 && st.size === 0) || (len > 0 && bytesRead === len && fingerprint(buf) === cp.fp)) {
        if (cp.finished) {
          this.finishedInodes.add(id);
          await fh.close();
          return undefined;
        }
        offset = cp.offset;
        part = cp.part;
        resumed = true;
      } else {
        this.opts.checkpoints.forget(id);
      }
    }
    if (!resumed && !this.initialScanDone && this.opts.readFrom === "tail") offset = st.size;
    let info: StreamInfo = { key: `file:${root}:${rel}`, path, relPath: rel, channel: "file" };
    if (this.opts.streamFor) info = this.opts.streamFor(info);
    const r = new FileReader(
      id,
      info,
      fh,
      offset,
      part,
      this.opts.maxLineBytes,
      (batch, reader) =>
        this.opts.submit(batch, {
          stream: reader.stream.key,
          path: reader.stream.path,
          fp: reader.fp,
          fpLen: reader.fpLen,
          finished: reader.finished || undefined,
        }),
      this.opts.decoderFor?.(info),
    );
    r.knownSize = st.size;
    r.onTruncate = () => {
      metrics.rotations.inc({ kind: "truncate" });
      this.opts.log.info(
        { path: r.stream.path },
        "file shrank (copytruncate): reading it again from the start",
      );
    };
    if (offset > 0) await r.updateFingerprint();
    this.byInode.set(id, r);
    this.byPath.set(path, r);
    metrics.filesWatched.set(this.byInode.size);
    if (offset > st.size) await r.truncated();
    return r;
  }

  private gone(path: string): void {
    const r = this.byPath.get(path);
    if (!r) return;
    metrics.rotations.inc({ kind: "delete" });
    this.byPath.delete(path);
    this.detach(r);
  }

  private detach(r: FileReader): void {
    if (r.detachedAt === undefined) r.detachedAt = Date.now();
    this.kick(r);
  }

  /** Finishes a reader: final read, unterminated last line, checkpoint `finished`, close. */
  private async finishReader(r: FileReader): Promise<void> {
    await this.withSlot(() => r.finish());
    this.byInode.delete(r.inputId);
    if (this.byPath.get(r.stream.path) === r) this.byPath.delete(r.stream.path);
    this.finishedInodes.add(r.inputId);
    metrics.filesWatched.set(this.byInode.size);
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    for (const path of [...this.byPath.keys()]) void this.check(path);
    // Folders without a watch (a root made after start or made again, a refused watch): try the watch again,
    // else list them (new files are found within a poll).
    for (const r of this.roots) if (!this.dirWatchers.has(r)) this.watchDir(r, true);
    for (const dir of [...this.polledDirs]) this.watchDir(dir, true);
    // Safety net for lost events (inotify queue overflow): re-list folders now and then.
    if (++this.pollCount % 10 === 0)
      for (const dir of [...this.dirWatchers.keys()]) void this.recheckDir(dir).then(() => this.scanDir(dir));
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
   * After a restart, files of a known stream may sit under rotated names we do not include (app.log → app.log.1):
   * - a file that was being read when the agent died: found by its inode next to its old name, finished;
   * - a file never read at all (written and rotated while the agent was down): a sibling of a known or current
   *   file named `<name>.<suffix>` (not compressed), unknown to the checkpoint, modified after `ownedSince`
   *   (when this container's CUID was made): read from the start.
   * An inode unknown to the checkpoint never had a line accepted, so reading it whole duplicates nothing.
   */
  private async resumeRotatedFromCheckpoint(): Promise<void> {
    const inputs = this.opts.checkpoints.inputs();
    const known = new Set(Object.keys(inputs));
    const streams = new Map<string, string>(); // old path → stream path (for rel)
    for (const s of Object.values(inputs)) streams.set(s.path, s.path);
    // Also the files found now: their stream may have rotated while the agent was down before it read anything.
    for (const p of this.byPath.keys()) streams.set(p, p);
    const dirs = new Set([...streams.keys()].map((p) => dirname(p)));
    for (const dir of dirs) {
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const name of names) {
        const p = join(dir, name);
        if (this.byPath.has(p)) continue;
        const st = await stat(p).catch(() => undefined);
        if (!st?.isFile()) continue;
        const id = idOf(st);
        if (this.byInode.has(id) || this.finishedInodes.has(id)) continue;
        let streamPath: string | undefined;
        const cp = inputs[id];
        if (cp && !cp.finished) streamPath = cp.path;
        else if (
          !cp &&
          this.opts.ownedSince !== undefined &&
          st.mtimeMs >= this.opts.ownedSince &&
          !COMPRESSED.test(name)
        ) {
          streamPath = [...streams.keys()].find(
            (sp) => dirname(sp) === dir && name.startsWith(`${basename(sp)}.`),
          );
        }
        if (!streamPath) continue;
        const root = this.rootOf(streamPath);
        if (root < 0) continue;
        const r = await this.openReader(p, root, relative(this.roots[root]!, streamPath), id, st);
        if (!r) continue;
        known.delete(id);
        this.byPath.delete(p);
        r.detachedAt = Date.now();
        this.opts.log.info(
          { path: p, stream: streamPath, offset: r.offset },
          "reading a rotated file left from before the restart",
        );
        this.kick(r);
      }
    }
    // Unfinished inputs whose file is gone for good: nothing left to read.
    for (const id of known)
      if (!inputs[id]?.finished && !this.byInode.has(id)) this.opts.checkpoints.forget(id);
  }

  /**
   * Finished files stay in the checkpoint while they exist (so a restart never reads them again under a rotated
   * name); once their inode is in none of the watched folders, they are forgotten, so the checkpoint stays small.
   */
  private async forgetVanishedFinished(): Promise<void> {
    const finished = Object.entries(this.opts.checkpoints.inputs()).filter(([, s]) => s.finished);
    if (finished.length === 0) return;
    const seen = new Set<string>();
    for (const dir of [...this.dirWatchers.keys(), ...this.polledDirs]) {
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const name of names) {
        const st = await stat(join(dir, name)).catch(() => undefined);
        if (st?.isFile()) seen.add(idOf(st));
      }
    }
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
    await this.watcher?.close();
    for (const w of this.dirWatchers.values()) w.close();
    this.dirWatchers.clear();
    await Promise.allSettled(this.opening.values());
    const readers = [...this.byInode.values()];
    for (const r of readers) clearTimeout(r.kickTimer);
    if (drain) await Promise.allSettled(readers.map((r) => this.withSlot(() => r.kick())));
    await Promise.allSettled(readers.map((r) => r.close()));
  }
}
