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
  // "stdout " / "stderr ", compared byte by byte (this runs for every line on the node)
  const c = s1 + 1;
  let channel: "stdout" | "stderr";
  if (b[c] !== 0x73 || b[c + 1] !== 0x74 || b[c + 6] !== SP) return undefined;
  if (b[c + 2] === 0x64 && b[c + 3] === 0x6f && b[c + 4] === 0x75 && b[c + 5] === 0x74) channel = "stdout";
  else if (b[c + 2] === 0x64 && b[c + 3] === 0x65 && b[c + 4] === 0x72 && b[c + 5] === 0x72)
    channel = "stderr";
  else return undefined;
  const tagStart = s1 + 8;
  const tag = b[tagStart];
  if (tag !== 0x50 /* P */ && tag !== 0x46 /* F */) return undefined;
  // Tags are `P` or `F`, optionally followed by `:`-separated extra tags (CRI reserves them).
  let tagEnd = tagStart + 1;
  if (b[tagEnd] === 0x3a /* : */) {
    tagEnd = b.indexOf(SP, tagEnd);
    // An empty line is written as `… F` with nothing after the tag (some runtimes omit the last space).
    if (tagEnd < 0) tagEnd = b.length;
  } else if (tagEnd < b.length && b[tagEnd] !== SP) return undefined;
  return { time, timeText, channel, final: tag === 0x46, textStart: Math.min(tagEnd + 1, b.length) };
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
