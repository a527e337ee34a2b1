import { randomUUID } from "node:crypto";
import { appendFileSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

/**
 * A simulated node: kubelet's /var/log/pods tree written the way containerd writes it (CRI format, long lines
 * split into P pieces, stdout and stderr interleaved in one file, nanosecond timestamps), with container
 * restarts (a new <restart>.log), kubelet-style rotation (rename to 0.log.<time>, new 0.log) and pod deletion.
 * It remembers every line it wrote, so a test can check that each comes out once, with its own container's CUID.
 */
export interface WrittenLine {
  text: string;
  /** Instance key as the agent's state file keys it: pod/<uid>/<container>/<restart>. */
  key: string;
  stream: "stdout" | "stderr";
  timeText: string;
  timeMs: number;
}

export interface SimPod {
  namespace: string;
  name: string;
  uid: string;
  containers: string[];
  restarts: Record<string, number>;
  deleted: boolean;
}

const BASE = Date.UTC(2024, 4, 1, 10, 0, 0);

export class PodLogTree {
  readonly pods: SimPod[] = [];
  readonly written: WrittenLine[] = [];
  private clock = 0;
  private seq = 0;
  /** Application lines written (including interleaved ones). */
  count = 0;

  constructor(
    readonly root: string,
    /** Payload padding so lines have a realistic size. */
    private readonly pad = 60,
    /** Keep every written line for checks (off for benchmarks). */
    private readonly record = true,
  ) {
    mkdirSync(root, { recursive: true });
  }

  dirOf(p: SimPod): string {
    return join(this.root, `${p.namespace}_${p.name}_${p.uid}`);
  }

  logOf(p: SimPod, container: string): string {
    return join(this.dirOf(p), container, `${p.restarts[container]}.log`);
  }

  addPod(i: number, containers = i % 10 === 0 ? ["app", "istio-proxy"] : ["app"]): SimPod {
    const p: SimPod = {
      namespace: `ns-${i % 7}`,
      name: `web-${i}-7d9f8c6b5-x${(i * 7919) % 100000}`,
      uid: randomUUID(),
      containers,
      restarts: Object.fromEntries(containers.map((c) => [c, 0])),
      deleted: false,
    };
    for (const c of containers) {
      mkdirSync(join(this.dirOf(p), c), { recursive: true });
      appendFileSync(this.logOf(p, c), "");
    }
    this.pods.push(p);
    return p;
  }

  /** The next nanosecond timestamp (strictly increasing, with a non-zero sub-millisecond part). */
  private nextTime(): { timeText: string; timeMs: number } {
    this.clock += 1_000_003; // ns
    const ms = BASE + Math.floor(this.clock / 1e6);
    const ns = this.clock % 1e9;
    const iso = new Date(ms).toISOString().slice(0, 19);
    return { timeText: `${iso}.${String(ns).padStart(9, "0")}Z`, timeMs: ms };
  }

  /**
   * Appends `n` lines to a container's current log: every 5th on stderr, every 7th split into P pieces.
   * Returns the lines' texts in order (the application's lines, without the CRI framing).
   */
  write(p: SimPod, container: string, n: number): string[] {
    const texts: string[] = [];
    const key = `pod/${p.uid}/${container}/${p.restarts[container]}`;
    let out = "";
    for (let k = 0; k < n; k++) {
      const seq = this.seq++;
      const stream = seq % 5 === 0 ? "stderr" : "stdout";
      const text = `L ${seq} ${p.name}/${container}/${p.restarts[container]} request_id=req-${seq} ${"x".repeat(this.pad)}`;
      const t = this.nextTime();
      if (seq % 7 === 3) {
        const a = Math.floor(text.length / 3);
        const pieces = [text.slice(0, a), text.slice(a, 2 * a), text.slice(2 * a)];
        out += `${t.timeText} ${stream} P ${pieces[0]}\n`;
        // an interleaved line of the other stream between pieces, as runtimes may write
        const other = stream === "stdout" ? "stderr" : "stdout";
        const oseq = this.seq++;
        const otext = `L ${oseq} ${p.name}/${container}/${p.restarts[container]} interleaved`;
        const ot = this.nextTime();
        this.count++;
        out += `${ot.timeText} ${other} F ${otext}\n`;
        if (this.record) this.written.push({ text: otext, key, stream: other, ...ot });
        texts.push(otext);
        out += `${this.nextTime().timeText} ${stream} P ${pieces[1]}\n`;
        out += `${this.nextTime().timeText} ${stream} F ${pieces[2]}\n`;
      } else {
        out += `${t.timeText} ${stream} F ${text}\n`;
      }
      if (this.record) this.written.push({ text, key, stream, ...t });
      this.count++;
      texts.push(text);
    }
    appendFileSync(this.logOf(p, container), out);
    return texts;
  }

  /** kubelet restarts a container: a new <restart+1>.log beside the old one, which stays. */
  restart(p: SimPod, container: string): void {
    p.restarts[container] = (p.restarts[container] ?? 0) + 1;
    appendFileSync(this.logOf(p, container), "");
  }

  /** kubelet rotates: rename to <restart>.log.<time>, create a new <restart>.log (same instance, same CUID). */
  rotate(p: SimPod, container: string): void {
    const log = this.logOf(p, container);
    renameSync(log, `${log}.20240501-100000`);
    appendFileSync(log, "");
  }

  /** The pod is deleted: kubelet removes its whole log folder. */
  deletePod(p: SimPod): void {
    rmSync(this.dirOf(p), { recursive: true, force: true });
    p.deleted = true;
  }

  get instanceKeys(): Set<string> {
    return new Set(this.written.map((w) => w.key));
  }
}
