import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readLines } from "./line-reader.js";

/**
 * Sorts any number of items with bounded memory: items are kept in memory up to `maxBytes` (estimated by the
 * caller), then sorted and spilled as JSON lines to a temporary file; `sorted()` merges the spilled runs with
 * a heap. Keys are compared element by element; equal keys keep insertion order (a sequence number is the
 * last key element; keys must be finite numbers, as they go through JSON). Why: a query over a store of any size must not hold every match at once.
 */

export type SortKey = number[];

interface Item<T> {
  k: SortKey;
  v: T;
}

const compareKeys = (a: SortKey, b: SortKey): number => {
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return 0;
};

export interface ExternalSorterOptions {
  /** In-memory budget before a run is spilled (estimated bytes of the items held). */
  maxBytes?: number;
  /** Folder for the temporary runs (default: the OS temp dir). */
  tmpDir?: string;
}

export class ExternalSorter<T> {
  private items: Array<Item<T>> = [];
  private heldBytes = 0;
  private seq = 0;
  private dir: string | undefined;
  private runs: string[] = [];
  private readonly maxBytes: number;

  constructor(private readonly opts: ExternalSorterOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  }

  /** `bytes`: a size estimate of the item, for the memory budget. */
  async add(key: SortKey, value: T, bytes: number): Promise<void> {
    this.items.push({ k: [...key, this.seq++], v: value });
    this.heldBytes += bytes + 64;
    if (this.heldBytes >= this.maxBytes) await this.spill();
  }

  private sortHeld(): void {
    this.items.sort((a, b) => compareKeys(a.k, b.k));
  }

  private async spill(): Promise<void> {
    this.sortHeld();
    this.dir ??= await mkdtemp(join(this.opts.tmpDir ?? tmpdir(), "ikon-sort-"));
    const path = join(this.dir, `run-${this.runs.length}.jsonl`);
    const fh = await open(path, "wx", 0o600);
    try {
      // written in slices so no single string holds the whole run
      for (let i = 0; i < this.items.length; i += 1000) {
        let text = "";
        for (const it of this.items.slice(i, i + 1000)) text += `${JSON.stringify([it.k, it.v])}\n`;
        await fh.write(text);
      }
    } finally {
      await fh.close();
    }
    this.runs.push(path);
    this.items = [];
    this.heldBytes = 0;
  }

  /** Every item added, in key order. Removes the temporary runs when done (or abandoned). */
  async *sorted(): AsyncGenerator<T> {
    try {
      if (this.runs.length === 0) {
        this.sortHeld();
        const items = this.items;
        this.items = [];
        for (const it of items) yield it.v;
        return;
      }
      if (this.items.length > 0) await this.spill();
      yield* this.merge();
    } finally {
      if (this.dir) await rm(this.dir, { recursive: true, force: true });
      this.dir = undefined;
    }
  }

  private async *merge(): AsyncGenerator<T> {
    // small chunks: one reader per run is open at once
    const readers = this.runs.map((p) => readLines(p, 64 * 1024));
    const heap: Array<{ item: Item<T>; src: number }> = [];
    const less = (i: number, j: number) => compareKeys(heap[i]!.item.k, heap[j]!.item.k) < 0;
    const swap = (i: number, j: number) => {
      const t = heap[i]!;
      heap[i] = heap[j]!;
      heap[j] = t;
    };
    const up = (i: number) => {
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!less(i, p)) return;
        swap(i, p);
        i = p;
      }
    };
    const down = (i: number) => {
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(l, m)) m = l;
        if (r < heap.length && less(r, m)) m = r;
        if (m === i) return;
        swap(i, m);
        i = m;
      }
    };
    const next = async (src: number): Promise<Item<T> | undefined> => {
      const r = await readers[src]!.next();
      if (r.done) return undefined;
      const [k, v] = JSON.parse(r.value) as [SortKey, T];
      return { k, v };
    };
    try {
      for (let s = 0; s < readers.length; s++) {
        const item = await next(s);
        if (item) {
          heap.push({ item, src: s });
          up(heap.length - 1);
        }
      }
      while (heap.length > 0) {
        const top = heap[0]!;
        yield top.item.v;
        const item = await next(top.src);
        if (item) {
          heap[0] = { item, src: top.src };
        } else {
          const last = heap.pop()!;
          if (heap.length === 0) break;
          heap[0] = last;
        }
        down(0);
      }
    } finally {
      for (const r of readers) await r.return(undefined);
    }
  }
}
