import { describe, expect, it } from "vitest";
import type { LogLine } from "../../src/core/record.js";
import { LineSplitter } from "../../src/sources/line-splitter.js";
import { CriDecoder, parseCriHeader } from "../../src/sources/node/cri.js";
import { parseRfc3339 } from "../../src/sources/node/decoder.js";
import { DockerJsonDecoder } from "../../src/sources/node/docker.js";

/** Raw lines as the tailer's splitter cuts them (offsets included). */
function rawLines(text: string, max = 1024 * 1024): LogLine[] {
  return new LineSplitter(max).push(Buffer.from(text));
}

const show = (ls: LogLine[]) =>
  ls.map((l) => ({
    text: l.bytes.toString(),
    offset: l.offset,
    channel: l.channel,
    time: l.time,
    timeText: l.timeText,
    ...(l.part !== undefined ? { part: l.part } : {}),
    ...(l.partial ? { partial: true } : {}),
    ...(l.unterminated ? { unterminated: true } : {}),
  }));

describe("RFC 3339 timestamps with nanoseconds", () => {
  it("keeps milliseconds exactly and accepts offsets", () => {
    expect(parseRfc3339("2016-10-06T00:17:09.669794202Z")).toBe(Date.UTC(2016, 9, 6, 0, 17, 9, 669));
    expect(parseRfc3339("2016-10-06T00:17:09Z")).toBe(Date.UTC(2016, 9, 6, 0, 17, 9, 0));
    expect(parseRfc3339("2016-10-06T02:17:09.5+02:00")).toBe(Date.UTC(2016, 9, 6, 0, 17, 9, 500));
    // same second, another zone: not confused by the per-second cache
    expect(parseRfc3339("2016-10-06T00:17:09.000000001+01:00")).toBe(Date.UTC(2016, 9, 5, 23, 17, 9, 0));
    expect(parseRfc3339("2016-10-06T00:17:09.01Z")).toBe(Date.UTC(2016, 9, 6, 0, 17, 9, 10));
    expect(parseRfc3339("2016-10-06 00:17:09Z")).toBeUndefined();
    // the fast path (same second as the last, containerd's exact shape) checks its digits too
    expect(parseRfc3339("2016-10-06T00:17:09.250000000Z")).toBe(Date.UTC(2016, 9, 6, 0, 17, 9, 250));
    expect(parseRfc3339("2016-10-06T00:17:09.999999999Z")).toBe(Date.UTC(2016, 9, 6, 0, 17, 9, 999));
    expect(parseRfc3339("2016-10-06T00:17:09.12x456789Z")).toBeUndefined();
    expect(parseRfc3339("2016-10-06T00:17:10.000000001Z")).toBe(Date.UTC(2016, 9, 6, 0, 17, 10, 0));
    expect(parseRfc3339("2016-10-06T00:17:09.1234567890Z")).toBeUndefined();
  });
});

describe("CRI decoder", () => {
  it("parses both streams, keeps the nanosecond timestamp text, and joins P pieces up to F", () => {
    const d = new CriDecoder({ maxLineBytes: 1 << 20 });
    const input =
      "2024-05-01T10:00:00.000000001Z stdout F hello world\n" +
      "2024-05-01T10:00:00.100000002Z stderr F oops: something\n" +
      "2024-05-01T10:00:01.123456789Z stdout P first half, \n" +
      "2024-05-01T10:00:01.223456789Z stderr F interleaved err\n" +
      "2024-05-01T10:00:01.323456789Z stdout P middle, \n" +
      "2024-05-01T10:00:01.423456789Z stdout F end\n";
    const raw = rawLines(input);
    const out = d.decode(raw);
    expect(show(out)).toEqual([
      {
        text: "hello world",
        offset: 0,
        channel: "stdout",
        time: Date.UTC(2024, 4, 1, 10, 0, 0, 0),
        timeText: "2024-05-01T10:00:00.000000001Z",
      },
      {
        text: "oops: something",
        offset: raw[1]!.offset,
        channel: "stderr",
        time: Date.UTC(2024, 4, 1, 10, 0, 0, 100),
        timeText: "2024-05-01T10:00:00.100000002Z",
      },
      {
        text: "interleaved err",
        offset: raw[3]!.offset,
        channel: "stderr",
        time: Date.UTC(2024, 4, 1, 10, 0, 1, 223),
        timeText: "2024-05-01T10:00:01.223456789Z",
      },
      {
        // the joined line carries its first piece's time and offset
        text: "first half, middle, end",
        offset: raw[2]!.offset,
        channel: "stdout",
        time: Date.UTC(2024, 4, 1, 10, 0, 1, 123),
        timeText: "2024-05-01T10:00:01.123456789Z",
      },
    ]);
    expect(d.heldFrom()).toBeUndefined();
    expect(d.badLines).toBe(0);
  });

  it("holds pending P pieces back from the checkpoint and emits the line once after a restart", () => {
    const head = "2024-05-01T10:00:00.000000001Z stdout F one\n";
    const p1 = "2024-05-01T10:00:00.000000002Z stdout P two-a \n";
    const f1 = "2024-05-01T10:00:00.000000003Z stdout F two-b\n";
    const d = new CriDecoder({ maxLineBytes: 1 << 20 });
    const out = d.decode(rawLines(head + p1));
    expect(out.map((l) => l.bytes.toString())).toEqual(["one"]);
    // The checkpoint must stop at the P piece: a restart re-reads from there.
    expect(d.heldFrom()).toBe(head.length);
    const restarted = new CriDecoder({ maxLineBytes: 1 << 20 });
    const splitter = new LineSplitter(1 << 20, head.length);
    const again = restarted.decode(splitter.push(Buffer.from(p1 + f1)));
    expect(show(again)).toEqual([
      {
        text: "two-a two-b",
        offset: head.length,
        channel: "stdout",
        time: Date.UTC(2024, 4, 1, 10, 0, 0, 0),
        timeText: "2024-05-01T10:00:00.000000002Z",
      },
    ]);
    expect(restarted.heldFrom()).toBeUndefined();
  });

  it("passes bad lines through unchanged, counts them, and accepts empty lines and extra tags", () => {
    const d = new CriDecoder({ maxLineBytes: 1 << 20 });
    const input =
      "not a cri line\n" +
      "2024-05-01T10:00:00Z stdout X wrong tag\n" +
      "2024-05-01T10:00:00Z stdin F wrong stream\n" +
      "2024-13-01T10:00:00Z stdout F bad month\n" +
      "2024-05-01T10:00:00Z stdout Fx glued tag\n" +
      "2024-05-01T10:00:00Z stdoux F wrong stream\n" +
      "2024-05-01T10:00:00.5Z stdout F\n" +
      "2024-05-01T10:00:00.5Z stdout F \n" +
      "2024-05-01T10:00:00.5Z stderr F:x:y tagged\n";
    const out = d.decode(rawLines(input));
    expect(out.map((l) => [l.bytes.toString(), l.channel])).toEqual([
      ["not a cri line", undefined],
      ["2024-05-01T10:00:00Z stdout X wrong tag", undefined],
      ["2024-05-01T10:00:00Z stdin F wrong stream", undefined],
      ["2024-13-01T10:00:00Z stdout F bad month", undefined],
      ["2024-05-01T10:00:00Z stdout Fx glued tag", undefined],
      ["2024-05-01T10:00:00Z stdoux F wrong stream", undefined],
      ["", "stdout"],
      ["", "stdout"],
      ["tagged", "stderr"],
    ]);
    expect(d.badLines).toBe(6);
    expect(out[0]!.time).toBeUndefined();
  });

  it("keeps bytes exactly (UTF-8, tabs, JSON payloads)", () => {
    const payload = '{"msg":"café ☕","request_id":"r-1"}\tend';
    const d = new CriDecoder({ maxLineBytes: 1 << 20 });
    const out = d.decode(rawLines(`2024-05-01T10:00:00.000000001Z stdout F ${payload}\n`));
    expect(out[0]!.bytes.toString("utf8")).toBe(payload);
  });

  it("flush emits a pending partial line as unterminated (the file was rotated or deleted)", () => {
    const d = new CriDecoder({ maxLineBytes: 1 << 20 });
    expect(d.decode(rawLines("2024-05-01T10:00:00Z stdout P dangling \n"))).toEqual([]);
    const out = d.flush();
    expect(show(out)).toEqual([
      {
        text: "dangling ",
        offset: 0,
        channel: "stdout",
        time: Date.UTC(2024, 4, 1, 10, 0, 0),
        timeText: "2024-05-01T10:00:00Z",
        unterminated: true,
      },
    ]);
    expect(d.heldFrom()).toBeUndefined();
  });

  it("emits a joined line longer than maxLineBytes in tagged parts", () => {
    const d = new CriDecoder({ maxLineBytes: 10 });
    const t = "2024-05-01T10:00:00Z stdout";
    const out = d.decode(rawLines(`${t} P aaaaaa\n${t} P bbbbbb\n${t} P cc\n${t} F dd\n`));
    expect(out.map((l) => [l.bytes.toString(), l.part, l.partial ?? false])).toEqual([
      ["aaaaaabbbbbb", 1, true],
      ["ccdd", 2, false],
    ]);
  });

  it("parseCriHeader finds the text start", () => {
    const b = Buffer.from("2024-05-01T10:00:00.000000001Z stderr P abc def");
    const h = parseCriHeader(b)!;
    expect(h).toMatchObject({ channel: "stderr", final: false });
    expect(b.subarray(h.textStart).toString()).toBe("abc def");
  });
});

describe("Docker json-file decoder", () => {
  const e = (log: string, stream: string, time: string) => `${JSON.stringify({ log, stream, time })}\n`;

  it("parses both streams with nanosecond times and joins entries without a trailing newline", () => {
    const d = new DockerJsonDecoder({ maxLineBytes: 1 << 20 });
    const input =
      e("hello\n", "stdout", "2024-05-01T10:00:00.123456789Z") +
      e("part one ", "stdout", "2024-05-01T10:00:01.000000001Z") +
      e("err line\r\n", "stderr", "2024-05-01T10:00:01.500000000Z") +
      e("part two\n", "stdout", "2024-05-01T10:00:02.000000001Z");
    const raw = rawLines(input);
    const out = d.decode(raw);
    expect(show(out)).toEqual([
      {
        text: "hello",
        offset: 0,
        channel: "stdout",
        time: Date.UTC(2024, 4, 1, 10, 0, 0, 123),
        timeText: "2024-05-01T10:00:00.123456789Z",
      },
      {
        text: "err line",
        offset: raw[2]!.offset,
        channel: "stderr",
        time: Date.UTC(2024, 4, 1, 10, 0, 1, 500),
        timeText: "2024-05-01T10:00:01.500000000Z",
      },
      {
        text: "part one part two",
        offset: raw[1]!.offset,
        channel: "stdout",
        time: Date.UTC(2024, 4, 1, 10, 0, 1, 0),
        timeText: "2024-05-01T10:00:01.000000001Z",
      },
    ]);
  });

  it("holds a partial entry back and passes bad lines through", () => {
    const d = new DockerJsonDecoder({ maxLineBytes: 1 << 20 });
    const first = e("partial ", "stderr", "2024-05-01T10:00:00Z");
    const out = d.decode(
      rawLines(
        `${first}not json\n{"log":"x\\n","stream":"stdin","time":"2024-05-01T10:00:00Z"}\n[1,2]\n{"log":5}\n`,
      ),
    );
    expect(out.map((l) => l.bytes.toString())).toEqual([
      "not json",
      '{"log":"x\\n","stream":"stdin","time":"2024-05-01T10:00:00Z"}',
      "[1,2]",
      '{"log":5}',
    ]);
    expect(d.badLines).toBe(4);
    expect(d.heldFrom()).toBe(0);
    expect(d.flush().map((l) => [l.bytes.toString(), l.channel, l.unterminated])).toEqual([
      ["partial ", "stderr", true],
    ]);
  });
});
