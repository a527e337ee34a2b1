import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import type { Readable } from "node:stream";
import { ERR_EXEC_SPAWN } from "../core/errors.js";
import type { LineBatch, StreamInfo } from "../core/record.js";
import { metrics } from "../observe/metrics.js";
import { LineSplitter } from "./line-splitter.js";
import { nextReadDelay, SMALL_CHUNK } from "./pipe-read-delay.js";

/** Signals the wrapper passes on to its child (the container runtime sends them to PID 1: us). */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = [
  "SIGTERM",
  "SIGINT",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGWINCH",
];

export interface ExecResult {
  /** Exit code to leave with: the child's code, or 128 + signal number when a signal ended it (shell convention). */
  code: number;
  signal: NodeJS.Signals | null;
}

/**
 * Runs the application as a child and cuts its stdout and stderr into lines (the "wrap the container" design):
 * each channel is one stream; reading pauses while the sinks have not accepted the previous batch, so a slow
 * sink slows the child's writes instead of growing memory.
 */
export class ExecSource {
  constructor(
    private readonly command: string,
    private readonly args: readonly string[],
    private readonly maxLineBytes: number,
    private readonly submit: (batch: LineBatch) => Promise<void>,
    /** The child's environment (the CLI passes ours without the agent's secrets). */
    private readonly env: NodeJS.ProcessEnv = process.env,
    /**
     * Awaited before the first SIGTERM reaches the child (e.g. leave DNS and let cached answers expire, so no
     * new connection reaches an app that stopped accepting). A second SIGTERM, or SIGINT, passes at once.
     */
    private readonly beforeStop?: () => Promise<void>,
    /** After a small chunk, stop reading the pipe this long (--read-delay): lines written close together come in one read. */
    private readonly readDelayMs = 0,
  ) {}

  start(): Promise<ExecResult> {
    let child: ChildProcess;
    try {
      child = spawn(this.command, this.args as string[], {
        stdio: ["inherit", "pipe", "pipe"],
        env: this.env,
      });
    } catch (e) {
      throw ERR_EXEC_SPAWN(`cannot start "${this.command}": ${(e as Error).message}`, e);
    }
    const send = (sig: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    };
    let stopHeld = false;
    const forward = (sig: NodeJS.Signals) => () => {
      if (sig === "SIGTERM" && this.beforeStop && !stopHeld) {
        stopHeld = true;
        void this.beforeStop().then(
          () => send(sig),
          () => send(sig),
        );
        return;
      }
      send(sig);
    };
    const handlers = FORWARDED_SIGNALS.map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);

    const pumps = [
      this.pump(child.stdout!, {
        key: "exec:stdout",
        path: "stdout",
        relPath: "stdout.log",
        channel: "stdout",
      }),
      this.pump(child.stderr!, {
        key: "exec:stderr",
        path: "stderr",
        relPath: "stderr.log",
        channel: "stderr",
      }),
    ];
    return new Promise<ExecResult>((resolve, reject) => {
      child.once("error", (e: NodeJS.ErrnoException) => {
        for (const [s, h] of handlers) process.off(s, h);
        const what =
          e.code === "ENOENT" ? "command not found" : e.code === "EACCES" ? "permission denied" : e.message;
        const err = ERR_EXEC_SPAWN(`cannot start "${this.command}": ${what}`, e);
        (err as { exitCode: number }).exitCode = e.code === "ENOENT" ? 127 : 126;
        reject(err);
      });
      child.once("exit", (code, signal) => {
        void Promise.all(pumps).then(() => {
          for (const [s, h] of handlers) process.off(s, h);
          const signo = signal ? (constants.signals[signal] ?? 0) : 0;
          resolve({ code: code ?? 128 + signo, signal });
        }, reject);
      });
    });
  }

  private pump(input: Readable, stream: StreamInfo): Promise<void> {
    const splitter = new LineSplitter(this.maxLineBytes);
    let chain = Promise.resolve();
    const send = (lines: LineBatch["lines"], unterminated: boolean) => {
      if (lines.length === 0) return;
      let pieces = 0;
      for (const l of lines) if (l.part !== undefined) pieces++;
      if (pieces) metrics.longLinePieces.inc(pieces);
      if (unterminated) metrics.unterminated.inc(lines.length);
      const batch: LineBatch = {
        stream,
        lines,
        inputId: stream.key,
        endOffset: splitter.offset,
        endPart: splitter.pieces,
        readAt: Date.now(),
      };
      inFlight++;
      input.pause();
      chain = chain
        .then(() => this.submit(batch))
        .then(() => {
          inFlight--;
          resumeIfFree();
        });
    };
    // Reading resumes once the sinks took the last batch and the read delay is over. While paused the pipe is not
    // read at all (no wake-up per write of the child); a big chunk means a burst, which is read on at once (a
    // paused pipe would block a fast writer).
    let inFlight = 0;
    let delaying = false;
    let delayMs = this.readDelayMs;
    let afterPause = false;
    const resumeIfFree = () => {
      if (inFlight === 0 && !delaying) input.resume();
    };
    input.on("data", (chunk: Buffer) => {
      send(splitter.push(chunk), false);
      // A paused stream keeps reading into its own buffer (up to its high-water mark) and then hands that over
      // as several chunks: what waits is this chunk plus that buffer, not this chunk alone.
      const waiting = chunk.length + input.readableLength;
      if (afterPause) {
        // what piled up during the pause: a fast child gets shorter pauses, so its pipe never fills
        afterPause = false;
        delayMs = nextReadDelay(delayMs, waiting, this.readDelayMs);
      }
      if (this.readDelayMs > 0 && !delaying && waiting < SMALL_CHUNK) {
        delaying = true;
        input.pause();
        setTimeout(() => {
          delaying = false;
          afterPause = true;
          resumeIfFree();
        }, delayMs);
      }
    });
    return new Promise((resolve, reject) => {
      input.once("end", () => {
        send(splitter.flush(), true);
        chain.then(resolve, reject);
      });
      input.once("error", reject);
    });
  }
}
