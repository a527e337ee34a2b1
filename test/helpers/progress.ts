/**
 * Waiting on progress instead of a fixed total: on a loaded machine work is slow, not lost. A wait fails only
 * when the measured progress has not moved for `idleMs`, and then says how far it got.
 */
export interface ProgressWait {
  /** Fail after this long without any change of the measure (default 30 s). */
  idleMs?: number;
  /** Poll interval (default 100 ms). */
  stepMs?: number;
  /** Named in the error. */
  what?: string;
}

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until `measure()` reaches `target`; fails when it stays unchanged for `idleMs`. Returns the last value. */
export async function waitForCount(
  measure: () => number | Promise<number>,
  target: number,
  opts: ProgressWait = {},
): Promise<number> {
  return waitUntil(async () => {
    const v = await measure();
    return { done: v >= target, progress: v };
  }, opts).then((p) => p as number);
}

/**
 * Polls `check()` until it reports `done`; its `progress` value (anything comparable with ===, e.g. a count or
 * a joined string) must change at least once every `idleMs`, or the wait fails.
 */
export async function waitUntil(
  check: () => Promise<{ done: boolean; progress: unknown }> | { done: boolean; progress: unknown },
  opts: ProgressWait = {},
): Promise<unknown> {
  const idleMs = opts.idleMs ?? 30_000;
  const stepMs = opts.stepMs ?? 100;
  let last: unknown;
  let movedAt = Date.now();
  for (;;) {
    const { done, progress } = await check();
    if (done) return progress;
    if (!Object.is(progress, last)) {
      last = progress;
      movedAt = Date.now();
    } else if (Date.now() - movedAt > idleMs)
      throw new Error(
        `${opts.what ?? "wait"}: no progress for ${idleMs} ms (stuck at ${JSON.stringify(progress)})`,
      );
    await pause(stepMs);
  }
}

/**
 * Polls `read()` until `ok(value)` holds and returns that value; fails when the value (compared as JSON) has
 * not changed for `idleMs`, naming what it was stuck at.
 */
export async function valueWhen<T>(
  read: () => T | Promise<T>,
  ok: (v: T) => boolean,
  opts: ProgressWait = {},
): Promise<T> {
  let value!: T;
  await waitUntil(async () => {
    value = await read();
    return { done: ok(value), progress: JSON.stringify(value) };
  }, opts);
  return value;
}

/**
 * Waits until a process's output so far (`text()`) matches `re`; fails at once when the process has exited
 * (`exited()`), or when its output has not grown for `idleMs`. Either error carries the output.
 */
export async function waitForText(
  text: () => string,
  re: RegExp,
  exited: () => boolean,
  opts: ProgressWait = {},
): Promise<void> {
  await waitUntil(
    () => {
      const t = text();
      if (!re.test(t) && exited()) throw new Error(`${opts.what ?? "process"} exited before ${re}: ${t}`);
      return { done: re.test(t), progress: t.length };
    },
    { stepMs: 20, ...opts },
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${text()}`);
  });
}
