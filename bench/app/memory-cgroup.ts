import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** A memory cgroup to run a process in as under a pod's `limits.memory` (root; cgroup v1 or v2). */
export interface MemoryCgroup {
  /** Write a PID here to move that process into the cgroup. */
  procs: string;
  /** How many times the kernel's OOM killer killed a process in it. */
  oomKills(): number;
  /** Removes the cgroup (its processes must have exited). */
  remove(): void;
}

const V1 = "/sys/fs/cgroup/memory";
const V2 = "/sys/fs/cgroup";

export function memoryCgroup(name: string, limitMiB: number): MemoryCgroup {
  const bytes = String(limitMiB * 1024 * 1024);
  // v1 (this machine's hybrid layout) has its own memory hierarchy; v2 lists memory in cgroup.controllers
  const v1 = existsSync(join(V1, "memory.limit_in_bytes"));
  if (!v1 && !readIfExists(join(V2, "cgroup.controllers")).split(/\s+/).includes("memory"))
    throw new Error("no memory cgroup controller here (need root and cgroup v1 memory or v2 with memory)");
  const dir = join(v1 ? V1 : V2, name);
  mkdirSync(dir, { recursive: true });
  if (v1) {
    writeFileSync(join(dir, "memory.limit_in_bytes"), bytes);
    // no swap to escape to: the limit is the pod's (memsw exists only with swap accounting on)
    if (existsSync(join(dir, "memory.memsw.limit_in_bytes")))
      writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), bytes);
  } else {
    writeFileSync(join(dir, "memory.max"), bytes);
    if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
  }
  const events = join(dir, v1 ? "memory.oom_control" : "memory.events");
  return {
    procs: join(dir, "cgroup.procs"),
    oomKills: () => Number(/^oom_kill (\d+)$/m.exec(readIfExists(events))?.[1] ?? 0),
    remove: () => rmdirSync(dir),
  };
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
