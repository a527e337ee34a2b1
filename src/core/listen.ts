import type { Server } from "node:net";
import { ERR_LISTEN, errorMessage } from "./errors.js";

const WHY: Record<string, string> = {
  EADDRINUSE: "the address is already in use (another process listens there; pick another port or stop it)",
  EACCES: "permission denied (ports below 1024 need privileges)",
  EADDRNOTAVAIL: "the address is not one of this machine's",
  ENOTFOUND: "the host name does not resolve",
  EAI_AGAIN: "the host name could not be resolved (DNS not answering)",
};

/**
 * Listens on host:port; a failure becomes one IKON_ERR_LISTEN line naming the flag(s) that chose the
 * address and the reason, instead of a stack trace.
 */
export function listenOrExplain(server: Server, host: string, port: number, flags: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const why = (e.code && WHY[e.code]) ?? errorMessage(e);
      reject(ERR_LISTEN(`cannot listen on ${host}:${port} (${flags}): ${why} [${e.code ?? "error"}]`, e));
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
