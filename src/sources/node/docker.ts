import { JoiningDecoder, parseRfc3339 } from "./decoder.js";

/**
 * Docker's json-file log driver: one JSON object per line, `{"log":"text\n","stream":"stdout","time":"…"}`.
 * Docker splits lines longer than 16 KiB into entries whose `log` does not end with `\n`; the line ends with
 * the first entry of the same stream that does.
 */
export class DockerJsonDecoder extends JoiningDecoder {
  protected parse(raw: Buffer) {
    let entry: { log?: unknown; stream?: unknown; time?: unknown } | undefined;
    try {
      const v: unknown = JSON.parse(raw.toString("utf8"));
      if (v !== null && typeof v === "object" && !Array.isArray(v)) entry = v as typeof entry;
    } catch {
      return undefined;
    }
    const channel: "stdout" | "stderr" | undefined =
      entry?.stream === "stdout" || entry?.stream === "stderr" ? entry.stream : undefined;
    const time = typeof entry?.time === "string" ? parseRfc3339(entry.time) : undefined;
    if (!entry || typeof entry.log !== "string" || !channel || time === undefined) return undefined;
    const log = entry.log;
    const final = log.endsWith("\n");
    let text = final ? log.slice(0, -1) : log;
    if (final && text.endsWith("\r")) text = text.slice(0, -1);
    return { text: Buffer.from(text), meta: { time, timeText: entry.time as string, channel }, final };
  }
}
