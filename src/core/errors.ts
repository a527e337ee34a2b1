/**
 * Every error a user can hit, in one place, with a stable code (fastify's FST_ERR_* idea).
 * Users and scripts match on `code`; the message names the setting or file and says what to do.
 */
export type ErrorKind = "config" | "io" | "sink" | "dns" | "query" | "internal";

export class IkontainerError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  /** CLI exit code when this error ends a command. */
  readonly exitCode: number;

  constructor(
    code: string,
    kind: ErrorKind,
    message: string,
    options?: { cause?: unknown; exitCode?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "IkontainerError";
    this.code = code;
    this.kind = kind;
    this.exitCode = options?.exitCode ?? (kind === "config" ? 2 : 1);
  }
}

const def =
  (code: string, kind: ErrorKind) =>
  (message: string, cause?: unknown): IkontainerError =>
    new IkontainerError(code, kind, message, { cause });

/** A flag, config-file key or environment variable has a bad value. Exit code 2. */
export const ERR_INVALID_SETTING = def("IKON_ERR_INVALID_SETTING", "config");
/** The YAML config file cannot be read or parsed. Exit code 2. */
export const ERR_CONFIG_FILE = def("IKON_ERR_CONFIG_FILE", "config");
/** The state dir cannot be created, read or written. */
export const ERR_STATE_DIR = def("IKON_ERR_STATE_DIR", "io");
/** A watched file cannot be opened or read (permission denied, vanished, not a regular file). */
export const ERR_SOURCE_READ = def("IKON_ERR_SOURCE_READ", "io");
/** A symlink under a watched folder points outside every watched folder; it is not followed. */
export const ERR_SYMLINK_ESCAPE = def("IKON_ERR_SYMLINK_ESCAPE", "io");
/**
 * A watched folder cannot be watched (ENOSPC: fs.inotify.max_user_watches reached; EACCES). Logged once; the
 * folder is listed on every poll instead (metric ikontainer_folders_polled) and the watch retried.
 */
export const ERR_WATCH = def("IKON_ERR_WATCH", "io");
/** A sink could not accept a batch (write failed, server down, rejected). */
export const ERR_SINK = def("IKON_ERR_SINK", "sink");
/** A DNS update or query failed (RCODE, TSIG, timeout). */
export const ERR_DNS = def("IKON_ERR_DNS", "dns");
/** The DNS server answered an update or transfer with an error RCODE or TSIG error (message names zone, server, RCODE). */
export const ERR_DNS_REJECTED = def("IKON_ERR_DNS_REJECTED", "dns");
/** The DNS server could not be reached (connection refused, timeout). */
export const ERR_DNS_UNREACHABLE = def("IKON_ERR_DNS_UNREACHABLE", "dns");
/** A DNS name has no live instances (resolve, proxy, ambassador). */
export const ERR_DNS_NOT_FOUND = def("IKON_ERR_DNS_NOT_FOUND", "dns");
/** A query command could not answer (store missing, bad time). */
export const ERR_QUERY = def("IKON_ERR_QUERY", "query");
/** `dashboards import`: Kibana could not be reached or refused the saved objects (message lists its errors). */
export const ERR_DASHBOARDS_IMPORT = def("IKON_ERR_DASHBOARDS_IMPORT", "io");
/**
 * A server could not listen (port in use, host name that does not resolve, address not on this machine);
 * the message names the flag (--metrics-port/--metrics-host, --listen).
 */
export const ERR_LISTEN = def("IKON_ERR_LISTEN", "io");
/** The child of `ikontainer exec` could not be started. */
export const ERR_EXEC_SPAWN = def("IKON_ERR_EXEC_SPAWN", "io");

/** A file or folder where the agent writes (output, state) is a symlink; it is not followed. */
export const ERR_SYMLINK_REFUSED = def("IKON_ERR_SYMLINK_REFUSED", "io");
/**
 * A state file is damaged in a way that would change identities (a container instance's CUID lost, lines of it
 * already sent): the agent refuses to start instead of minting a new CUID; the message says what to do.
 */
export const ERR_STATE_DAMAGED = def("IKON_ERR_STATE_DAMAGED", "io");
/**
 * The agent would read its own output (a watched folder inside an output folder or the state dir, or the same
 * folder). Exit code 2. (Outputs inside a watched folder are not refused: they are not read.)
 */
export const ERR_OWN_OUTPUT = def("IKON_ERR_OWN_OUTPUT", "config");

/**
 * Node mode cannot tell which pod it runs in (no --pod-uid / POD_UID, nothing detected): logged at start, since its
 * own container log could then be read back. Set POD_UID from the Downward API (fieldRef metadata.uid).
 */
export const ERR_OWN_POD_UNKNOWN = def("IKON_ERR_OWN_POD_UNKNOWN", "config");

/** A checkpoint matches neither its file nor a copy of it: the file is read from the start (logged warning, counted). */
export const ERR_CHECKPOINT_MISMATCH = def("IKON_ERR_CHECKPOINT_MISMATCH", "io");
/** A file name under a watched folder is not valid UTF-8: reported once and counted, not read. */
export const ERR_FILE_NAME = def("IKON_ERR_FILE_NAME", "io");

export function isIkontainerError(e: unknown): e is IkontainerError {
  return e instanceof IkontainerError;
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
