import type { FileReader } from "./file-reader.js";
import type { ContentMark } from "./same-content.js";
import type { TailerOptions } from "./tailer-options.js";

/** Where a reader opened at an offset (a rotated file or a copy) starts, and for which stream. */
export interface AdoptAt {
  offset: number;
  part: number;
  streamPath: string;
  /** The content mark already matched against the file (its checkpoint's, or the copied content's). */
  mark?: ContentMark | undefined;
}

/** What the tailer's helpers (copy adoption, restart recovery) use of it. */
export interface TailContext {
  readonly opts: TailerOptions;
  readonly roots: readonly string[];
  rootOf(path: string): number;
  /** Whether an inode is read now or was read to its end (never adopted again). */
  taken(id: string): boolean;
  openReader(
    path: string,
    root: number,
    rel: string,
    id: string,
    adopt?: AdoptAt,
  ): Promise<FileReader | "moved" | undefined>;
  /** An inode read to its end: never read again. */
  markFinished(id: string): void;
  warnMismatch(path: string, reason: string, offset: number): void;
}
