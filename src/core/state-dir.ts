import { mkdirSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ERR_STATE_DIR } from "./errors.js";

const WHY: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  ENOTDIR: "a part of the path is a file, not a folder",
  EDQUOT: "disk quota exceeded",
};
const why = (e: unknown): string => {
  const code = (e as NodeJS.ErrnoException).code ?? "error";
  return `${WHY[code] ?? (e as Error).message} [${code}]`;
};

/**
 * Makes the state dir (0700) one level at a time and proves it writable, before anything else touches it.
 * Why not `mkdirSync(…, { recursive: true })`: on a path such as /proc/1/nope it spins in the kernel's
 * ENOENT answers (83% CPU, SIGTERM never handled); and a read-only dir must say EROFS/EACCES, not ENOENT.
 */
export function ensureStateDir(dir: string): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  for (let p = abs; ; ) {
    try {
      if (!statSync(p).isDirectory())
        throw ERR_STATE_DIR(`cannot use state dir ${dir}: ${p} is not a folder; pass another --state-dir`);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        if ((e as { code?: string }).code === "IKON_ERR_STATE_DIR") throw e;
        throw ERR_STATE_DIR(`cannot use state dir ${dir}: ${p}: ${why(e)}`, e);
      }
      missing.unshift(p);
      const parent = dirname(p);
      if (parent === p) break;
      p = parent;
    }
  }
  for (const p of missing) {
    try {
      mkdirSync(p, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      const hint =
        (e as NodeJS.ErrnoException).code === "ENOENT"
          ? `${dirname(p)} exists but does not accept new folders (a virtual file system such as /proc?)`
          : why(e);
      throw ERR_STATE_DIR(
        `cannot create state dir ${dir} (at ${p}): ${hint}; pass a writable --state-dir`,
        e,
      );
    }
  }
  const probe = join(abs, `.ikontainer-write-test-${process.pid}`);
  try {
    writeFileSync(probe, "", { flag: "wx", mode: 0o600 });
    unlinkSync(probe);
  } catch (e) {
    throw ERR_STATE_DIR(`state dir ${dir} is not writable: ${why(e)}; pass a writable --state-dir`, e);
  }
}
