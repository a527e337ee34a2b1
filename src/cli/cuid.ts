import type { Command } from "commander";
import { AGENT_SETTINGS } from "../config/agent.js";
import { resolveSettings } from "../config/settings.js";
import { readCuid } from "../core/cuid.js";
import { ERR_INVALID_SETTING } from "../core/errors.js";

export function registerCuid(program: Command): void {
  program
    .command("cuid")
    .description("print the CUID kept in a state dir (the container instance's identity)")
    .option(
      "--state-dir <DIR>",
      "state dir of the agent (default: ./ikontainer-state) [env IKONTAINER_STATE_DIR]",
    )
    .option("--json", "print the whole record (cuid, version, created_at) as JSON")
    .action((flags: { stateDir?: string; json?: boolean }) => {
      const s = resolveSettings(
        AGENT_SETTINGS.filter((d) => d.key === "stateDir"),
        { stateDir: flags.stateDir },
      );
      const rec = readCuid(s.stateDir as string);
      if (!rec)
        throw ERR_INVALID_SETTING(
          `invalid --state-dir: no CUID in ${s.stateDir} (the agent has not run there yet)`,
        );
      process.stdout.write(flags.json ? `${JSON.stringify(rec)}\n` : `${rec.cuid}\n`);
    });
}
