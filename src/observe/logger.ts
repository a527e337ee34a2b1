import { pino } from "pino";

/** The agent's own logs: JSON lines on stderr (stdout belongs to the stdout sink and to exec's child). */
export type Logger = pino.Logger;

export function createLogger(level = "info"): Logger {
  return pino(
    { level, base: { name: "ikontainer" }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: 2, sync: true }),
  );
}

export const silentLogger: Logger = pino({ level: "silent" });
