import { readlinkSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { ERR_OWN_OUTPUT } from "../core/errors.js";

/**
 * The agent must never read what it wrote (issue 11 item 2, issue 15 item 4): `run --watch /w --output
 * file:/w/out` would otherwise read /w/out/app.log, write /w/out/out/app.log, and so on without end.
 *
 * - An output folder (`file:`, `store:`), the state dir, or a file our stdout/stderr is redirected to, INSIDE a
 *   watched folder: not read (the tailer skips it), said once at start.
 * - A watched folder that IS such a folder or lies inside one: refused (IKON_ERR_OWN_OUTPUT), since then
 *   everything watched would be the agent's own output.
 * Paths are compared as given and after resolving symlinks, so a link to the output folder does not hide it.
 */
export interface OwnOutputs {
  /** Absolute paths (as the tailer sees them) whose files are never read. */
  skipped: string[];
  skip: (path: string) => boolean;
}

/** realpath of the longest existing prefix, plus the rest (the output folder may not exist yet). */
function realpathLoose(p: string): string {
  const abs = resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(realpathLoose(parent), basename(abs));
  }
}

const inside = (child: string, parent: string): boolean =>
  child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);

/** A regular file our fd (1: stdout, 2: stderr) is redirected to, if any (Linux /proc). */
function redirectedFile(fd: number): string | undefined {
  try {
    const p = readlinkSync(`/proc/self/fd/${fd}`);
    return p.startsWith("/") && statSync(p).isFile() ? p : undefined;
  } catch {
    return undefined;
  }
}

export function ownOutputs(opts: {
  roots: readonly string[];
  outputs: readonly string[];
  stateDir: string;
}): OwnOutputs {
  const dirs = opts.outputs
    .filter((o) => o.startsWith("file:") || o.startsWith("store:"))
    .map((o) => o.slice(o.indexOf(":") + 1));
  dirs.push(opts.stateDir);
  const files = [redirectedFile(1), redirectedFile(2)].filter((f): f is string => f !== undefined);
  const skipped: string[] = [];
  for (const rootGiven of opts.roots) {
    const root = resolve(rootGiven);
    const rootReal = realpathLoose(root);
    for (const d of dirs) {
      const real = realpathLoose(d);
      if (inside(rootReal, real))
        throw ERR_OWN_OUTPUT(
          `invalid --watch ${rootGiven}: it is ${rootReal === real ? "" : "inside "}${d === opts.stateDir ? "the state dir" : "the output folder"} ${d}, so the agent would read its own output; watch the application's folder only, and put outputs and --state-dir outside it (or in a subfolder of it, which is not read)`,
        );
    }
    for (const p of [...dirs, ...files]) {
      const real = realpathLoose(p);
      if (!inside(real, rootReal)) continue;
      // Both the path under the watched folder as given and the resolved one (symlinks inside the folder).
      skipped.push(join(root, relative(rootReal, real)), real);
    }
  }
  const unique = [...new Set(skipped)];
  return {
    skipped: unique,
    skip: (path) => unique.some((s) => inside(path, s)),
  };
}
