/**
 * A counting semaphore: at most `max` reads at once (bounds memory with thousands of files). Strictly first come,
 * first served: a freed slot is handed to the oldest waiter, never taken by a newcomer. (With newcomers allowed
 * to take a freed slot before the woken waiter ran, a busy poll kept re-queueing the woken ones at the back, and
 * files created after start were never read on a starved machine.)
 */
export class ReadSlots {
  private active = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly max: number) {}

  /** Reads waiting for a slot now. */
  get waiting(): number {
    return this.waiters.length;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active++;
    else await new Promise<void>((r) => this.waiters.push(r)); // the slot is handed over by its releaser
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    }
  }
}
