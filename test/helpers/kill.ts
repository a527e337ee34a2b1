/**
 * Crashes a service a test started (`kill -9` by its PID) and waits until the process is gone, so a restart
 * never races the dying one for its port or files. Does nothing when there is no such process.
 */
export async function killAndWait(pid: number, what: string, boundMs = 20_000): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return; // already gone
  }
  // A killed process has nothing to make progress on: the bound only catches one the kernel cannot reap.
  const until = Date.now() + boundMs;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (Date.now() > until) throw new Error(`${what} (PID ${pid}) still alive ${boundMs} ms after SIGKILL`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
