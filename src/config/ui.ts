import type { SettingDef } from "./settings.js";

/** Settings of `ikontainer ui` (besides the query commands' store and Elasticsearch settings). */
export const UI_SETTINGS: SettingDef[] = [
  {
    key: "listen",
    kind: "string",
    arg: "HOST:PORT",
    default: "127.0.0.1:8765",
    description: "address of the page; loopback by default (port 0 picks a free one)",
  },
  {
    key: "kibana",
    kind: "string",
    arg: "URL",
    default: "http://localhost:5601",
    description: "Kibana base URL for the 'same query in Kibana' links (only used to build links)",
  },
  {
    key: "pageSize",
    kind: "int",
    arg: "N",
    default: 100,
    description: "lines per page (1-1000)",
  },
];
