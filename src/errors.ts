import type { TokenUsage } from "./machines/heartbeat.types.js";

/**
 * Typed errors. Each has a stable `code` (for scripts and tests) and the exit
 * code the CLI uses for it. Only `src/cli.ts` turns them into messages and
 * process exit codes.
 */

/** Exit codes of the CLI (DESIGN.md section 3). */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  stateFile: 3,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Base class of every error the CLI knows how to report. */
export abstract class RavenclawsError extends Error {
  /** Stable machine-readable code. */
  abstract readonly code: string;
  /** Process exit code for this error. */
  abstract readonly exitCode: ExitCodeValue;
  /** What the user can do about it. */
  readonly hint: string | undefined;

  constructor(message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options?.hint;
  }
}

/** Bad command-line usage: unknown or invalid option values (exit 2). */
export class UsageError extends RavenclawsError {
  readonly code: string;
  readonly exitCode = ExitCode.usage;
  /** The option at fault, e.g. `--tick-interval`. */
  readonly option: string | undefined;
  constructor(message: string, options?: { option?: string; code?: string; hint?: string }) {
    super(message, options);
    this.code = options?.code ?? "usage";
    this.option = options?.option;
  }
}

/** Invalid configuration value from a file, the environment or the user store (exit 2). */
export class ConfigError extends RavenclawsError {
  readonly code = "config";
  readonly exitCode = ExitCode.usage;
  constructor(
    message: string,
    readonly key: string,
    readonly source: string,
    options?: { hint?: string; cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Why a state file cannot be used. */
export type StateFileProblem =
  | "unreadable"
  | "not-json"
  | "invalid"
  | "future-version"
  | "empty"
  /** The state file is gone but its previous version (`.prev`) is there. */
  | "missing"
  /** `--recover` found no usable previous version. */
  | "unrecoverable";

/** A state file exists but cannot be used; it is left untouched (exit 3). */
export class StateFileError extends RavenclawsError {
  readonly code: string;
  readonly exitCode = ExitCode.stateFile;
  constructor(
    message: string,
    readonly path: string,
    readonly problem: StateFileProblem,
    options?: { hint?: string; cause?: unknown },
  ) {
    super(message, options);
    this.code = `state-${problem}`;
  }
}

/** Who holds a heartbeat's lock. */
export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the holder took the lock. */
  since: string;
}

/** Another process runs this heartbeat (exit 3). */
export class LockedError extends RavenclawsError {
  readonly code = "state-locked";
  readonly exitCode = ExitCode.stateFile;
  constructor(
    message: string,
    readonly path: string,
    readonly holder: LockHolder | null,
    options?: { hint?: string; cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Writing the state file or the journal failed. */
export class PersistError extends RavenclawsError {
  readonly code = "persist-failed";
  readonly exitCode = ExitCode.failed;
  /** The operating system's error code (`ENOSPC`, `EROFS`, `EIO`, …), when there is one. */
  readonly osCode: string | undefined;
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown; hint?: string },
  ) {
    super(message, options);
    const code = (options?.cause as { code?: unknown } | undefined)?.code;
    this.osCode = typeof code === "string" ? code : undefined;
  }
}

/**
 * This process lost its heartbeat lock (the lock file vanished or another
 * process holds it) or another process advanced the state file: it must not
 * write again. Fatal (exit 1).
 */
export class LockCompromisedError extends RavenclawsError {
  readonly code = "lock-compromised";
  readonly exitCode = ExitCode.failed;
  constructor(
    message: string,
    /** The lock file. */
    readonly path: string,
    options?: { cause?: unknown; hint?: string },
  ) {
    super(message, options);
  }
}

/** Kinds of model failures, by what the user can do about them. */
export type LlmErrorKind =
  | "auth"
  | "forbidden"
  | "model-not-found"
  | "unreachable"
  | "quota"
  | "rate-limited"
  | "server"
  | "timeout"
  | "bad-request"
  | "bad-output"
  /** The reply was larger than the cap and was cut off. */
  | "too-large"
  /** The connection dropped or was refused after the server had answered before: transient. */
  | "connection"
  /** The prompt did not fit the model's context window, even shrunk. */
  | "context-length"
  | "aborted";

const FATAL_LLM_KINDS: ReadonlySet<LlmErrorKind> = new Set([
  "auth",
  "forbidden",
  "model-not-found",
  "unreachable",
  "quota",
]);

/**
 * A model call failed. `fatal` errors end the heartbeat; the others fail one
 * tick. `usage` is set when the server answered (and so charged for the call)
 * but the answer could not be used.
 */
export class LlmError extends RavenclawsError {
  readonly code: string;
  readonly exitCode = ExitCode.failed;
  readonly fatal: boolean;
  readonly status: number | undefined;
  readonly usage: TokenUsage | undefined;
  constructor(
    readonly kind: LlmErrorKind,
    message: string,
    options?: { hint?: string; cause?: unknown; status?: number; usage?: TokenUsage },
  ) {
    super(message, options);
    this.code = `llm-${kind}`;
    this.fatal = FATAL_LLM_KINDS.has(kind);
    this.status = options?.status;
    this.usage = options?.usage;
  }
}

/** The lifetime token budget (`--max-tokens`) would be exceeded by the next model call. Fatal. */
export class BudgetError extends RavenclawsError {
  readonly code = "budget";
  readonly exitCode = ExitCode.failed;
  readonly fatal = true;
  constructor(
    readonly used: number,
    readonly estimate: number,
    readonly limit: number,
  ) {
    super(
      `The token budget is spent: ${used} of ${limit} tokens used, and the next model call needs about ${estimate} more.`,
      { hint: "Raise --max-tokens (or [heartbeat] max_tokens) to continue." },
    );
  }
}

/** The heartbeat ended in `failed` (exit 1). */
export class HeartbeatFailedError extends RavenclawsError {
  readonly code = "heartbeat-failed";
  readonly exitCode = ExitCode.failed;
  constructor(
    message: string,
    readonly reason: string,
    options?: { hint?: string },
  ) {
    super(message, options);
  }
}

/** Plain-data form of an error, as it travels through the statechart and into files. */
export interface ErrorInfo {
  code: string;
  message: string;
  fatal: boolean;
  hint?: string;
  /**
   * What the failed work already spent (a model call that was answered but
   * unusable). The machine charges it to the budgets and drops it from the
   * error it records.
   */
  usage?: TokenUsage;
}

/**
 * Turns anything thrown into {@link ErrorInfo}; only {@link LlmError}s,
 * {@link PersistError}s and {@link LockCompromisedError}s can be fatal.
 */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof LlmError) {
    return {
      code: error.code,
      message: error.message,
      fatal: error.fatal,
      ...(error.hint ? { hint: error.hint } : {}),
      ...(error.usage ? { usage: error.usage } : {}),
    };
  }
  if (error instanceof RavenclawsError) {
    return {
      code: error.code,
      message: error.message,
      fatal:
        error instanceof PersistError ||
        error instanceof BudgetError ||
        error instanceof LockCompromisedError,
      ...(error.hint ? { hint: error.hint } : {}),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "internal", message, fatal: false };
}

/** Why a command could not do what it was asked (exit 1). */
export type CommandProblem =
  | "not-running"
  | "remote-host"
  | "signal-failed"
  | "stop-timeout"
  | "config-not-set"
  | "not-found"
  | "nothing-pending"
  | "already-decided"
  | "not-moved";

/** A `stop`/`wake` (or `config get`) that could not do what was asked; exit 1. */
export class CommandFailedError extends RavenclawsError {
  readonly exitCode: ExitCodeValue = ExitCode.failed;
  constructor(
    readonly code: CommandProblem,
    message: string,
    options?: { hint?: string; cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Why a database cannot be used. */
export type DatabaseProblem =
  /** No server answers at the URL's host and port (refused, unknown host, timeout). */
  | "unreachable"
  /** The server refused the user or password. */
  | "auth-failed"
  /** The server has no database of the URL's name. */
  | "not-found"
  /** The URL is not a PostgreSQL URL. */
  | "bad-url"
  /** The database's schema was written by a newer ravenclaws. */
  | "schema-too-new"
  /** The database has not been migrated (`ravenclaws db migrate`). */
  | "not-migrated"
  /** The embedded server could not be started. */
  | "embedded-failed"
  /** Anything else the server refused. */
  | "failed";

/**
 * The PostgreSQL database (`--database-url`, `--embedded-db`) cannot be used.
 * Its message names the URL with the password redacted. Exit 2 for a bad
 * URL, 3 for a schema this version cannot use (like a state file), else 1.
 */
export class DatabaseError extends RavenclawsError {
  readonly code: string;
  readonly exitCode: ExitCodeValue;
  constructor(
    readonly problem: DatabaseProblem,
    message: string,
    /** The database URL, its password redacted. */
    readonly url: string,
    options?: { hint?: string; cause?: unknown },
  ) {
    super(message, options);
    this.code = `database-${problem}`;
    this.exitCode =
      problem === "bad-url"
        ? ExitCode.usage
        : problem === "schema-too-new" || problem === "not-migrated"
          ? ExitCode.stateFile
          : ExitCode.failed;
  }
}

/** The `code` of a Node system error (`ENOENT`, `ENOSPC`, …), if it is one. */
export function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
