import { open } from "node:fs/promises";

/**
 * The lines of a file, read in fixed-size chunks and handed out one at a time: nothing is read ahead of the
 * consumer (readline's async iterator keeps reading while the consumer awaits, so memory follows the file's
 * size, not the query's budget). A trailing `\r` is dropped, like readline with crlfDelay Infinity.
 */
export async function* readLines(path: string, chunkBytes = 256 * 1024): AsyncGenerator<string> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    let carry: Buffer[] = [];
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, chunkBytes, null);
      if (bytesRead === 0) break;
      const data = buf.subarray(0, bytesRead);
      let start = 0;
      for (let nl = data.indexOf(10, start); nl >= 0; nl = data.indexOf(10, start)) {
        let line = data.subarray(start, nl);
        if (carry.length > 0) {
          line = Buffer.concat([...carry, line]);
          carry = [];
        }
        start = nl + 1;
        const end = line.length > 0 && line[line.length - 1] === 13 ? line.length - 1 : line.length;
        yield line.toString("utf8", 0, end);
      }
      if (start < data.length) carry.push(Buffer.from(data.subarray(start)));
    }
    if (carry.length > 0) {
      const line = Buffer.concat(carry);
      const end = line.length > 0 && line[line.length - 1] === 13 ? line.length - 1 : line.length;
      if (end > 0) yield line.toString("utf8", 0, end);
    }
  } finally {
    await fh.close();
  }
}
