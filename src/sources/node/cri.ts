import { JoiningDecoder, parseRfc3339 } from "./decoder.js";

/**
 * The CRI log format (kubelet's /var/log/pods, written by containerd and CRI-O):
 * `<RFC3339Nano time> <stdout|stderr> <P|F>[:tags] <text>`. `P` marks a piece of a line the runtime split
 * (containerd splits at 16 KiB); the line ends with the next `F` piece of the same stream.
 */
export interface CriEntry {
  time: number;
  timeText: string;
  channel: "stdout" | "stderr";
  final: boolean;
  /** Offset of the text within the raw line. */
  textStart: number;
}

const SP = 0x20;

/** Parses the header of one CRI line; undefined when the line is not CRI. */
export function parseCriHeader(b: Buffer): CriEntry | undefined {
  const s1 = b.indexOf(SP);
  if (s1 < 20 || s1 > 40) return undefined;
  const timeText = b.toString("latin1", 0, s1);
  const time = parseRfc3339(timeText);
  if (time === undefined) return undefined;
  let channel: "stdout" | "stderr";
  if (b.toString("latin1", s1 + 1, s1 + 8) === "stdout ") channel = "stdout";
  else if (b.toString("latin1", s1 + 1, s1 + 8) === "stderr ") channel = "stderr";
  else return undefined;
  const tagStart = s1 + 8;
  let tagEnd = b.indexOf(SP, tagStart);
  // An empty line is written as `… F` with nothing after the tag (some runtimes omit the last space).
  if (tagEnd < 0) tagEnd = b.length;
  const tag = b.toString("latin1", tagStart, tagEnd);
  // Tags are `P` or `F`, optionally followed by `:`-separated extra tags (CRI reserves them).
  const first = tag.split(":")[0];
  if (first !== "P" && first !== "F") return undefined;
  return { time, timeText, channel, final: first === "F", textStart: Math.min(tagEnd + 1, b.length) };
}

export class CriDecoder extends JoiningDecoder {
  protected parse(raw: Buffer) {
    const e = parseCriHeader(raw);
    if (!e) return undefined;
    return {
      text: raw.subarray(e.textStart),
      meta: { time: e.time, timeText: e.timeText, channel: e.channel },
      final: e.final,
    };
  }
}
