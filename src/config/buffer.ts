import type { SettingDef } from "./settings.js";

/** The on-disk buffer kept in front of network sinks (fluentd, Elasticsearch): `<state-dir>/buffer/<sink>/`. */
export const BUFFER_SETTINGS: SettingDef[] = [
  {
    key: "buffer",
    kind: "bool",
    default: true,
    description:
      "keep a durable on-disk buffer in front of network sinks (--no-buffer: write straight through)",
  },
  {
    key: "bufferMaxBytes",
    kind: "size",
    arg: "SIZE",
    default: 256 * 1024 * 1024,
    description:
      "bound of each network sink's on-disk buffer; when full, reading pauses (nothing is dropped)",
  },
];
