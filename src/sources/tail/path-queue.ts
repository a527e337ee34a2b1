/**
 * Runs one task at a time per key (a path), in order, and coalesces: while a task for a key is still waiting
 * its turn, asking again returns that task (it looks at the path when it runs, so a second one adds nothing).
 * Without the coalescing a starved machine's poll queued one more check per path on every tick.
 */
export class PathQueue {
  private readonly last = new Map<string, Promise<void>>();
  private readonly waiting = new Map<string, Promise<void>>();

  constructor(private readonly onError: (key: string, e: unknown) => void) {}

  run(key: string, task: () => Promise<void>): Promise<void> {
    const queued = this.waiting.get(key);
    if (queued) return queued;
    const prev = this.last.get(key) ?? Promise.resolve();
    const next: Promise<void> = prev
      .then(() => {
        if (this.waiting.get(key) === next) this.waiting.delete(key);
        return task();
      })
      .catch((e) => this.onError(key, e));
    this.last.set(key, next);
    this.waiting.set(key, next);
    void next.finally(() => {
      if (this.last.get(key) === next) this.last.delete(key);
    });
    return next;
  }

  /** Settles once every task queued so far has run. */
  async settled(): Promise<void> {
    await Promise.allSettled(this.last.values());
  }
}
