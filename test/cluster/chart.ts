import { join } from "node:path";
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

export function uninstallChart(c: Cluster, release: string): void {
  c.helm(["uninstall", release, "--namespace", AGENT_NS, "--wait", "--timeout", "120s"]);
}
