import { BUFFER_SETTINGS } from "../config/buffer.js";
import { FLUENTD_SETTINGS } from "../config/fluentd.js";
import { EXTRA_AGENT_SETTINGS } from "./agent-common.js";

// `run` and `exec` get the --fluentd-* and --buffer* flags; the `fluentd://` factory is in src/sinks/index.ts.
for (const d of [...FLUENTD_SETTINGS, ...BUFFER_SETTINGS])
  if (!EXTRA_AGENT_SETTINGS.some((e) => e.key === d.key)) EXTRA_AGENT_SETTINGS.push(d);
