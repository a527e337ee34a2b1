/**
 * Where container logs live on a node, and what their paths say about the container instance.
 *
 * kubelet: `/var/log/pods/<namespace>_<pod>_<pod-uid>/<container>/<restart>.log` (rotated copies get a
 * `.<timestamp>` suffix and may be gzipped). Namespace and pod names are DNS labels/subdomains, so they never
 * contain `_`, and the UID is a UUID: splitting the folder name on `_` is exact.
 * Docker (json-file driver): `/var/lib/docker/containers/<id>/<id>-json.log`.
 */
export interface PodContainerLog {
  kind: "pod";
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  restart: number;
}

export interface DockerContainerLog {
  kind: "docker";
  containerId: string;
}

export type ContainerLogPath = PodContainerLog | DockerContainerLog;

const POD_DIR = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)_([a-z0-9]([-a-z0-9.]*[a-z0-9])?)_([0-9a-fA-F-]{8,64})$/;
const CONTAINER = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const RESTART = /^(\d{1,9})\.log$/;
const DOCKER_ID = /^[0-9a-f]{64}$/;

/** Parses a path relative to the pod log folder; undefined when it is not a container's current log file. */
export function parsePodLogPath(relPath: string): PodContainerLog | undefined {
  const parts = relPath.split("/");
  if (parts.length !== 3) return undefined;
  const [dir, container, file] = parts as [string, string, string];
  const d = POD_DIR.exec(dir);
  const r = RESTART.exec(file);
  if (!d || !r || !CONTAINER.test(container)) return undefined;
  return {
    kind: "pod",
    namespace: d[1] as string,
    pod: d[3] as string,
    podUid: d[5] as string,
    container,
    restart: Number(r[1]),
  };
}

/** Parses a path relative to Docker's containers folder: `<id>/<id>-json.log`. */
export function parseDockerLogPath(relPath: string): DockerContainerLog | undefined {
  const parts = relPath.split("/");
  if (parts.length !== 2) return undefined;
  const [dir, file] = parts as [string, string];
  if (!DOCKER_ID.test(dir) || file !== `${dir}-json.log`) return undefined;
  return { kind: "docker", containerId: dir };
}

/** The container instance a log file belongs to: the key its CUID is kept under. */
export function instanceKey(p: ContainerLogPath): string {
  return p.kind === "pod" ? `pod/${p.podUid}/${p.container}/${p.restart}` : `docker/${p.containerId}`;
}

/** Include globs (relative to the folder) for the tailer. */
export const POD_LOG_INCLUDE = ["*/*/*.log"];
export const DOCKER_LOG_INCLUDE = ["*/*-json.log"];
