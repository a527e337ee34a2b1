import { isUtf8 } from "node:buffer";
import { type FSWatcher as FsWatcher, watch as fsWatch, type Stats, statSync } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { FSWatcher } from "chokidar";
import { errorMessage } from "../../core/errors.js";
import type { Logger } from "../../observe/logger.js";
import { metrics } from "../../observe/metrics.js";
import { idOf } from "./rotated-files.js";

/** What the folder watcher needs from the tailer. */
export interface FolderWatchHost {
  watcher: "inotify" | "chokidar" | "poll" | undefined;
  log: Logger;
  stopped: () => boolean;
  rootOf: (path: string) => number;
  wanted: (path: string) => { root: number; rel: string } | undefined;
  reportOnce: (key: string, kind: string, msg: string, extra: Record<string, unknown>) => void;
  /** A path in a watched folder to decide on (open, rotate, gone). */
  check: (path: string) => Promise<void>;
  /** A watch event for a path; `changeOnly`: content changed (no create, delete or rename). */
  entryEvent: (path: string, changeOnly: boolean) => void;
}

/**
 * Finds the files under the watched folders: one native inotify watch per folder (or chokidar for the folder
 * tree with --watcher chokidar), listings for what is already there, and folders the kernel would not watch
 * listed on every poll instead. It decides nothing about files: every path goes to the tailer's `check`.
 */
export class FolderWatcher {
  private chokidar: FSWatcher | undefined;
  readonly dirWatchers = new Map<string, FsWatcher>();
  /** The identity (device + inode) of each watched folder when its watch was made. */
  private readonly dirIds = new Map<string, string>();
  /** Folders the kernel would not watch (inotify limit, permission), or all with --watcher poll: listed on every poll. */
  readonly polledDirs = new Set<string>();
  private scans: Promise<void>[] = [];
  private initialDone = false;

  constructor(
    private readonly roots: readonly string[],
    private readonly host: FolderWatchHost,
  ) {}

  /** Watches every root and lists every folder under them (every file present at start is checked). */
  async start(): Promise<void> {
    if (this.host.watcher === "chokidar") {
      // chokidar finds the folder tree (recursively, now and later); each folder gets one inotify watch of its
      // own for its files. (chokidar re-reads a folder on every change in it: see --watcher in the README.)
      const { watch } = await import("chokidar"); // loaded only for --watcher chokidar
      this.chokidar = watch(this.roots as string[], {
        ignored: (_path: string, st?: Stats) => st !== undefined && !st.isDirectory(),
        followSymlinks: false,
        atomic: false,
        ignoreInitial: false,
        persistent: true,
      });
      this.chokidar.on("addDir", (dir) => this.watchDir(dir));
      this.chokidar.on("unlinkDir", (dir) => this.unwatchDir(dir));
      this.chokidar.on("error", (e) => {
        metrics.errors.inc({ kind: "watch" });
        this.host.log.warn({ err: errorMessage(e) }, "watcher error");
      });
      await new Promise<void>((res) => this.chokidar!.once("ready", () => res()));
    } else {
      // One native inotify watch per folder; a folder's listing finds its subfolders, and a new subfolder
      // shows up as an event in its parent. Watching folders, not files, keeps memory flat with many files.
      for (const r of this.roots) this.watchDir(r);
    }
    // Listings find subfolders, whose listings find theirs: wait until a round adds no new listing.
    for (let n = 0; n < this.scans.length; ) {
      n = this.scans.length;
      await Promise.all(this.scans);
    }
    this.scans = [];
    this.initialDone = true;
  }

  /** Every poll: retry missing watches; now and then re-list every folder (safety net for lost events). */
  poll(relist: boolean): void {
    for (const r of this.roots)
      if (!this.dirWatchers.has(r) && !this.polledDirs.has(r)) this.watchDir(r, true);
    for (const dir of [...this.polledDirs]) this.watchDir(dir, true);
    if (this.host.watcher === "poll") return; // every folder was just listed
    if (relist)
      for (const dir of [...this.dirWatchers.keys()]) void this.recheckDir(dir).then(() => this.scanDir(dir));
  }

  /** Every folder listed now (watched or polled). */
  folders(): string[] {
    return [...this.dirWatchers.keys(), ...this.polledDirs];
  }

  async stop(): Promise<void> {
    await this.chokidar?.close();
    for (const w of this.dirWatchers.values()) w.close();
    this.dirWatchers.clear();
  }

  /**
   * Watches one folder's entries, then checks what is already there (watch first: nothing slips between). A
   * folder that cannot be watched (e.g. ENOSPC: fs.inotify.max_user_watches reached) is listed on every poll
   * instead, and its watch is retried then (`retry`); listings of its parent do not list it again.
   */
  watchDir(dir: string, retry = false): void {
    if (this.dirWatchers.has(dir) || this.host.stopped() || (this.polledDirs.has(dir) && !retry)) return;
    if (this.host.watcher === "poll") {
      // --watcher poll: no inotify at all; every folder is listed on every poll (not a failure: not counted).
      this.polledDirs.add(dir);
      const scan = this.scanDir(dir);
      if (!this.initialDone) this.scans.push(scan);
      return;
    }
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
        this.host.entryEvent(path, event === "change");
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
      this.host.reportOnce(
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
    if (!this.initialDone) this.scans.push(scan);
  }

  unwatchDir(dir: string): void {
    this.dirWatchers.get(dir)?.close();
    this.dirWatchers.delete(dir);
    this.dirIds.delete(dir);
    if (this.polledDirs.delete(dir)) metrics.foldersPolled.set(this.polledDirs.size);
  }

  /** A path that is no file we read: a new subfolder to watch (native watcher), or a folder that is gone. */
  async folderEvent(path: string): Promise<void> {
    if (this.host.watcher === "chokidar" || this.host.rootOf(path) < 0) return;
    const l = await lstat(path).catch(() => undefined);
    if (!l) return this.unwatchDir(path);
    if (l.isDirectory()) this.watchDir(path); // symlinked folders are not followed
  }

  /** A watched folder gone or replaced by another one under the same path: drop its watch, watch the new one. */
  async recheckDir(dir: string): Promise<void> {
    const st = await stat(dir).catch(() => undefined);
    const watchedId = this.dirIds.get(dir);
    if (watchedId === undefined || (st && idOf(st) === watchedId)) return;
    this.unwatchDir(dir);
    if (st?.isDirectory()) this.watchDir(dir);
  }

  async scanDir(dir: string): Promise<void> {
    // Names as bytes: a name that is not valid UTF-8 cannot be opened through a string path (Node replaces the
    // bad bytes), so it is reported instead of being silently never read.
    const entries = await readdir(dir, { withFileTypes: true, encoding: "buffer" }).catch(
      (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") this.unwatchDir(dir); // gone: a root is watched again once it exists
        return [];
      },
    );
    const names: Array<{ name: string; isDir: boolean }> = [];
    for (const e of entries) {
      const raw = e.name as unknown as Buffer;
      const name = raw.toString("utf8");
      if (!isUtf8(raw)) {
        this.badName(dir, raw, name, e.isDirectory());
        continue;
      }
      names.push({ name, isDir: e.isDirectory() });
    }
    // Subfolders are watched from listings too: with chokidar this is the safety net for a folder it missed
    // (e.g. removed and made again quickly); the periodic rescan re-lists every watched folder.
    for (const e of names) if (e.isDir) this.watchDir(join(dir, e.name));
    await Promise.all(names.filter((e) => !e.isDir).map((e) => this.host.check(join(dir, e.name))));
  }

  /** A file or folder whose name is not valid UTF-8 and that the include patterns would take: reported once. */
  private badName(dir: string, raw: Buffer, name: string, isDir: boolean): void {
    if (!isDir && !this.host.wanted(join(dir, name))) return;
    this.host.reportOnce(
      `name:${dir}/${raw.toString("hex")}`,
      "file_name",
      "file name is not valid UTF-8; it is not read: rename it",
      {
        folder: dir,
        name: JSON.stringify(raw.toString("latin1")),
        nameHex: raw.toString("hex"),
        code: "IKON_ERR_FILE_NAME",
      },
    );
  }
}
