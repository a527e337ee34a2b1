import { describe, expect, it } from "vitest";
import type { LogLine } from "../../src/core/record.js";
import { LineSplitter } from "../../src/sources/line-splitter.js";

const show = (lines: LogLine[]) =>
  lines.map((l) => ({
    t: l.bytes.toString("latin1"),
    o: l.offset,
    p: l.part,
    pp: l.partial,
    u: l.unterminated,
  }));

function splitAll(input: Buffer, max: number, chunk: number, flush = true) {
  const s = new LineSplitter(max);
  const out: LogLine[] = [];
  for (let i = 0; i < input.length; i += chunk) s.push(Buffer.from(input.subarray(i, i + chunk)), out);
  if (flush) s.flush(out);
  return { lines: show(out), offset: s.offset };
}

describe("LineSplitter", () => {
  it("splits on \\n, drops one trailing \\r, keeps empty lines, reports offsets", () => {
    const { lines, offset } = splitAll(Buffer.from("a\r\n\nb\r\r\nc"), 100, 1000, false);
    expect(lines).toEqual([
      { t: "a", o: 0, p: undefined, pp: undefined, u: undefined },
      { t: "", o: 3, p: undefined, pp: undefined, u: undefined },
      { t: "b\r", o: 4, p: undefined, pp: undefined, u: undefined },
    ]);
    expect(offset).toBe(8); // "c" is pending: a restart resumes at its first byte
  });

  it("cuts the same pieces at the same offsets however the reads were chunked", () => {
    const input = Buffer.from(`${"x".repeat(25)}\nshort\n${"y".repeat(20)}\n${"z".repeat(13)}`);
    const ref = splitAll(input, 10, input.length);
    for (const chunk of [1, 3, 7, 10, 11, 64]) expect(splitAll(input, 10, chunk)).toEqual(ref);
    expect(ref.lines.map((l) => [l.t.length, l.o, l.p, l.pp ?? false])).toEqual([
      [10, 0, 1, true],
      [10, 10, 2, true],
      [5, 20, 3, false],
      [5, 26, undefined, false],
      [10, 32, 1, true],
      [10, 42, 2, false],
      [10, 53, 1, true],
      [3, 63, 2, false],
    ]);
  });

  it("resumes from a checkpointed offset and piece number", () => {
    const input = Buffer.from(`${"x".repeat(25)}\nnext\n`);
    const a = new LineSplitter(10);
    const first = a.push(input.subarray(0, 15));
    expect(first.map((l) => l.part)).toEqual([1]);
    const b = new LineSplitter(10, a.offset, a.pieces); // restart: re-read from the checkpoint
    const rest = b.push(input.subarray(a.offset));
    expect(show(rest).map((l) => [l.t.length, l.o, l.p])).toEqual([
      [10, 10, 2],
      [5, 20, 3],
      [4, 26, undefined],
    ]);
  });
});
