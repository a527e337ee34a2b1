import { appendFileSync, truncateSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LineBatch } from "../../src/core/record.js";
import { FileReader } from "../../src/sources/tail/file-reader.js";
import { removeDir, tempDir } from "../helpers/agent.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) removeDir(d);
});

async function reader(path: string) {
  const got: string[] = [];
  const offsets: number[] = [];
  /** Bytes of each batch handed on, newlines included. */
  const batchBytes: number[] = [];
  let truncations = 0;
  const fh = await open(path, "r");
  const r = new FileReader(
    "1:1",
    { key: "k", path, relPath: "a.log", channel: "file" },
    fh,
    0,
    0,
    1024,
    async (b: LineBatch) => {
      let n = 0;
      for (const l of b.lines) {
        got.push(l.bytes.toString());
        n += l.bytes.length + 1;
      }
      offsets.push(b.endOffset);
      batchBytes.push(n);
    },
  );
  r.onTruncate = async () => {
    truncations++;
    return false;
  };
  return { r, got, offsets, batchBytes, truncations: () => truncations };
}

describe("FileReader (real files)", () => {
  it("decides truncation from fstat after reaching the end, never from a stale size", async () => {
    const d = tempDir("ikon-fr-");
    dirs.push(d);
    const path = join(d, "a.log");
    writeFileSync(path, "1\n2\n3\n");
    const { r, got, offsets, truncations } = await reader(path);
    await r.kick();
    expect(got).toEqual(["1", "2", "3"]);
    // A stale, smaller size (a stat taken before the last read) must not restart the file.
    r.knownSize = 2;
    appendFileSync(path, "4\n");
    await r.kick();
    expect(got).toEqual(["1", "2", "3", "4"]);
    expect(truncations()).toBe(0);
    // A real copytruncate: shrinks below what was read → restart at 0, pending bytes are kept as a line.
    appendFileSync(path, "half");
    await r.kick();
    truncateSync(path, 0);
    appendFileSync(path, "new-1\n");
    await r.kick();
    expect(truncations()).toBe(1);
    expect(got).toEqual(["1", "2", "3", "4", "half", "new-1"]);
    expect(offsets.at(-1)).toBe(6);
    await r.close();
  });

  it("hands a catch-up backlog on in batches of at most 64 KiB, every line once and in order", async () => {
    // Issue 13: the batch size bounds what a catch-up burst keeps alive until the sinks accept it.
    const d = tempDir("ikon-fr-");
    dirs.push(d);
    const path = join(d, "a.log");
    const lines = Array.from({ length: 20_000 }, (_, i) =>
      `line-${String(i).padStart(8, "0")}`.padEnd(99, "x"),
    );
    writeFileSync(path, `${lines.join("\n")}\n`);
    const { r, got, batchBytes } = await reader(path);
    r.knownSize = lines.length * 100; // as after a stat of the whole backlog
    for (let kicks = 0; got.length < lines.length && kicks < 10_000; kicks++) await r.kick();
    expect(got).toEqual(lines);
    // One read's bytes plus the line it completed from the previous read (each line here is 100 bytes).
    expect(Math.max(...batchBytes)).toBeLessThanOrEqual(64 * 1024 + 100);
    await r.close();
  });
});
