import type { SettingDef } from "./settings.js";

/** The on-disk buffer kept in front of fluentd outputs (`BufferedSink` wraps any network sink): `<state-dir>/buffer/<sink>/`. */
export const BUFFER_SETTINGS: SettingDef[] = [
  {
    key: "buffer",
    kind: "bool",
    default: true,
    description:
      "keep a durable on-disk buffer in front of fluentd outputs (--no-buffer: write straight through)",
  },
  {
    key: "bufferMaxBytes",
    kind: "size",
    arg: "SIZE",
    default: 256 * 1024 * 1024,
    description:
      "bound of each buffered output's on-disk queue; when full, reading pauses (nothing is dropped)",
  },
];
