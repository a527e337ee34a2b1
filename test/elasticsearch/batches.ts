import type { LineBatch, StreamInfo } from "../../src/core/record.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import type { StructuredOptions } from "../../src/transforms/tag.js";

/** LineBatch objects as the tailer makes them: consecutive lines of one stream with their byte offsets. */
export function makeBatches(opts: {
  stream: StreamInfo;
  inputId: string;
  lines: string[];
  perBatch: number;
  startOffset?: number;
  time?: number;
}): LineBatch[] {
  const out: LineBatch[] = [];
  let offset = opts.startOffset ?? 0;
  const t = opts.time ?? Date.now();
  for (let i = 0; i < opts.lines.length; i += opts.perBatch) {
    const chunk = opts.lines.slice(i, i + opts.perBatch);
    const lines = chunk.map((text, j) => {
      const bytes = Buffer.from(text);
      const line = { bytes, offset, time: t + i + j };
      offset += bytes.length + 1;
      return line;
    });
    out.push({ stream: opts.stream, lines, inputId: opts.inputId, endOffset: offset, endPart: 0, readAt: t });
  }
  return out;
}

export function fileStream(relPath: string, extra: Partial<StreamInfo> = {}): StreamInfo {
  return { key: `file:0:${relPath}`, path: `/var/log/app/${relPath}`, relPath, channel: "file", ...extra };
}

export function structured(cuid: string, svc: string, fields?: Record<string, string>): StructuredOptions {
  const o: StructuredOptions = { identity: { cuid, svc }, requestIds: new RequestIdExtractor() };
  if (fields) o.fields = fields;
  return o;
}
