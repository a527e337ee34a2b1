import type { Stats } from "node:fs";
import { relative } from "node:path";
import type { InputState } from "../../core/checkpoint.js";
import { metrics } from "../../observe/metrics.js";
import { FileReader } from "./file-reader.js";
import { findCopy, findNewerCopies } from "./rotated-files.js";
import type { ContentMark } from "./same-content.js";
import type { TailContext } from "./tail-context.js";

/**
 * Copytruncate: a copy holds content a reader of the original was reading. The copy is read on its original's
 * stream, only past what was handed on, and that position is checkpointed before anything else of the stream
 * goes out (a restart resumes the copy there and never takes it for content never seen).
 */
export class CopyAdoption {
  constructor(private readonly t: TailContext) {}

  /**
   * The file shrank below what was read (copytruncate). Lines written between our last read and the
   * truncation exist only in the copy: find the copy (same first bytes, long enough) and read it from the first
   * byte not handed on, to its end, before the file is read again from 0. True when a copy took over.
   */
  async truncated(
    r: FileReader,
    from: { offset: number; part: number },
    atStart: InputState | undefined,
  ): Promise<boolean> {
    metrics.rotations.inc({ kind: "truncate" });
    const mark: ContentMark = { fp: r.fp, fpLen: r.fpLen };
    const copy = await findCopy(r.stream.path, mark, from.offset, this.t.taken);
    if (!copy) {
      if (atStart)
        this.t.warnMismatch(r.stream.path, "it is shorter than the checkpointed offset", atStart.offset);
      else
        this.t.opts.log.info(
          { path: r.stream.path },
          "file shrank (copytruncate) and no copy of it was found: reading it again from the start",
        );
      return false;
    }
    const c = await this.adopt(r.stream.path, copy, { ...from, mark });
    if (!c) return false;
    this.t.opts.log.info(
      { path: r.stream.path, copy: copy.path, offset: from.offset },
      "file shrank (copytruncate): read its copy from where we were, then the file from the start",
    );
    // Inside r's read (it holds a slot): the copy is read without one of its own.
    await c.finish(true);
    this.t.markFinished(c.inputId);
    // Behind by more than one rotation: newer copies hold generations never seen here; read them whole, in order.
    for (const later of await findNewerCopies(r.stream.path, copy.st.mtimeMs, this.t.taken)) {
      const n = await this.adopt(r.stream.path, later, { offset: 0, part: 0 });
      if (!n) continue;
      await n.finish(true);
      this.t.markFinished(n.inputId);
    }
    return true;
  }

  /** Opens a copy of `streamPath`'s content at `from` (its mark matched), on that stream; records the position. */
  async adopt(
    streamPath: string,
    copy: { path: string; id: string; st: Stats },
    from: { offset: number; part: number; mark?: ContentMark | undefined },
  ): Promise<FileReader | undefined> {
    const root = this.t.rootOf(streamPath);
    if (root < 0) return undefined;
    const offset = Math.min(from.offset, copy.st.size);
    const c = await this.t.openReader(copy.path, root, relative(this.t.roots[root]!, streamPath), copy.id, {
      offset,
      part: offset === from.offset ? from.part : 0,
      streamPath,
      mark: from.mark,
    });
    if (!(c instanceof FileReader)) return undefined;
    // Checkpointed before any later content of the stream goes out: a restart resumes the copy here and
    // never takes it for content never seen.
    await c.commitPosition();
    return c;
  }
}
