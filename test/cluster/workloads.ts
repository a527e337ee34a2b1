/**
 * Workloads for the cluster tests: busybox shells whose every line says which container instance wrote it
 * (`inst=<random token made at container start>`) and carries a request ID, so lost, duplicated or mixed lines
 * show up exactly.
 */

/**
 * 20 lines/s: `<tag> inst=<token> seq=<n> x-request-id=<token>-<n>`; on SIGTERM (pod deletion) a last line
 * `<tag>-end inst=<token> last=<n>` says how many it wrote (the kubelet removes a deleted pod's logs at once,
 * so the file cannot be the reference for the last instance).
 */
export const steadyWriter = (tag: string): string[] => [
  "sh",
  "-c",
  `tok=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \\n'); trap 'echo "${tag}-end inst=$tok last=$i"; exit 0' TERM; i=0
while true; do i=$((i+1)); echo "${tag} inst=$tok seq=$i x-request-id=$tok-$i"; sleep 0.05; done`,
];

export const BURST_BATCHES = 20;
export const BURST_BATCH_LINES = 1000;
/** ~4 MB in 20 s, so the kubelet (containerLogMaxSize 1Mi, checked every 10 s) rotates the log while it runs. */
export const burstWriter = (): string[] => [
  "sh",
  "-c",
  `trap 'exit 0' TERM; pad=$(printf '%0120d' 0); b=0; i=0
while [ $b -lt ${BURST_BATCHES} ]; do b=$((b+1)); j=0
  while [ $j -lt ${BURST_BATCH_LINES} ]; do j=$((j+1)); i=$((i+1)); echo "burst seq=$i x-request-id=burst-$i $pad"; done
  sleep 1
done
echo "burst done total=$i"
while true; do sleep 1; done`,
];

interface ContainerSpec {
  name: string;
  command: string[];
}

const container = (image: string, c: ContainerSpec) => ({
  name: c.name,
  image,
  imagePullPolicy: "Never",
  command: c.command,
  resources: { requests: { cpu: "10m", memory: "8Mi" }, limits: { memory: "32Mi" } },
});

export function deployment(ns: string, name: string, image: string, containers: ContainerSpec[]): object {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: ns },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 2,
          automountServiceAccountToken: false,
          containers: containers.map((c) => container(image, c)),
        },
      },
    },
  };
}

export function pod(ns: string, name: string, image: string, containers: ContainerSpec[]): object {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns, labels: { app: name } },
    spec: {
      terminationGracePeriodSeconds: 2,
      automountServiceAccountToken: false,
      containers: containers.map((c) => container(image, c)),
    },
  };
}

/** `inst`, `seq` and the request ID of a workload line. */
export function parseLine(text: string): { inst: string; seq: number; rid: string } | undefined {
  const m = /inst=(\w+) seq=(\d+) x-request-id=(\S+)/.exec(text);
  return m ? { inst: m[1]!, seq: Number(m[2]), rid: m[3]! } : undefined;
}

/** The lines a steady writer wrote, from its end line (`<tag>-end inst=<token> last=<n>`). */
export function linesOfEnded(tag: string, endLine: string): string[] {
  const m = /inst=(\w+) last=(\d+)/.exec(endLine);
  if (!m) throw new Error(`not an end line: ${endLine}`);
  const [tok, last] = [m[1]!, Number(m[2])];
  const out: string[] = [];
  for (let i = 1; i <= last; i++) out.push(`${tag} inst=${tok} seq=${i} x-request-id=${tok}-${i}`);
  out.push(endLine);
  return out;
}
