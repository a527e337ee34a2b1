import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RealFluentd } from "../fixtures/fluentd.js";
import { type Cluster, REPO } from "./harness.js";

/** The chart's namespace in the cluster tests, and where each release keeps its state on the host. */
export const AGENT_NS = "logging";
export const stateDirOf = (release: string) => `/var/tmp/ikontainer-k8s/cluster/agent-${release}`;

/** helm install of the chart with only image, outputs (and the state folder on the host) set, plus `extra`. */
export function installChart(c: Cluster, release: string, outputs: string[], extra: string[] = []): void {
  c.helm([
    "install",
    release,
    join(REPO, "deploy/helm/ikontainer"),
    "--namespace",
    AGENT_NS,
    "--create-namespace",
    "--set",
    `image.repository=${c.env.IKONTAINER_K8S_AGENT_IMAGE.split(":")[0]}`,
    "--set",
    `image.tag=${c.env.IKONTAINER_K8S_AGENT_IMAGE.split(":")[1]}`,
    "--set",
    "image.pullPolicy=Never",
    "--set",
    `outputs={${outputs.join(",")}}`,
    "--set",
    `state.hostPath=${stateDirOf(release)}`,
    ...extra,
    "--wait",
    "--timeout",
    "240s",
  ]);
}

/**
 * The chart with only a fluentd output to `fluentd` (listening on the bridge's gateway): its CA and shared key
 * go in as Secrets, the key through a 0600 file in `scratch` (never a literal on a command line).
 */
export function installChartWithFluentd(
  c: Cluster,
  release: string,
  fluentd: RealFluentd,
  scratch: string,
): void {
  c.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: AGENT_NS } });
  const secret = (name: string, fromFile: string) =>
    c.kubectl(["-n", AGENT_NS, "create", "secret", "generic", name, `--from-file=${fromFile}`]);
  const keyFile = join(scratch, `${release}-shared-key`);
  writeFileSync(keyFile, fluentd.o.sharedKey, { mode: 0o600 });
  try {
    secret("fluentd-forward", `shared-key=${keyFile}`);
  } finally {
    rmSync(keyFile);
  }
  secret("fluentd-tls", `ca.crt=${fluentd.tls.ca}`);
  installChart(
    c,
    release,
    [`fluentd://${c.env.IKONTAINER_K8S_GATEWAY}:${fluentd.o.port}`],
    ["--set", "fluentd.caSecret=fluentd-tls", "--set", "fluentd.sharedKeySecret=fluentd-forward"],
  );
}

export function uninstallChart(c: Cluster, release: string): void {
  c.helm(["uninstall", release, "--namespace", AGENT_NS, "--wait", "--timeout", "120s"]);
}
