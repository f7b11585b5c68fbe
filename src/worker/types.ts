/**
 * The contract of a worker (`ravenclaws worker`, and `serve --database-url`
 * running ticks in-process): options, events and the running handle of
 * `startWorker` in ./worker.ts. See docs/architecture.md, "Workers".
 */
import type { HeartbeatLlm, UserConfig } from "../host/wiring.js";
import type { StateFile } from "../schemas/stateFile.js";
import type { JournalEntry } from "../services/store/index.js";
import type { RunSettings } from "../settings.js";

/** Default `--concurrency`: ticks one worker runs at the same time. */
export const DEFAULT_CONCURRENCY = 4;
/** How often an idle worker asks the queue for due jobs (ms). */
export const DEFAULT_POLL_MS = 250;
/** How often a worker looks for expired leases and orphaned jobs (ms). */
export const DEFAULT_RESCUE_MS = 2_000;
/** A job whose workdir no worker reaches fails after this long (ms). */
export const DEFAULT_UNREACHABLE_DEADLINE_MS = 10 * 60_000;
/** A job this worker cannot reach is offered again after this long (ms). */
export const DEFAULT_UNREACHABLE_RETRY_MS = 5_000;
/** On stop, in-flight ticks get this long to finish before they are abandoned (ms). */
export const DEFAULT_STOP_GRACE_MS = 500;
/** Default lease lifetime without a refresh (the store's: 3 × 5 s). */
export const DEFAULT_LEASE_TTL_MS = 15_000;
/** An active job with no lease for the lease's lifetime plus this long belongs to a dead worker (ms). */
export const DEFAULT_ORPHAN_AFTER_MS = 5_000;

/** Options of `startWorker`. */
export interface WorkerOptions {
  /** The database's URL (its password is a secret: redacted everywhere). Needed unless `db` is given. */
  databaseUrl?: string;
  /**
   * An open database to use instead of `databaseUrl` (serve passes its own);
   * the worker does not close it.
   */
  db?: import("../services/pg/db.js").Database;
  /** The process environment (API key, notify tokens, user config dir). */
  env: NodeJS.ProcessEnv;
  /** At most this many ticks at the same time (default {@link DEFAULT_CONCURRENCY}). */
  concurrency?: number;
  /** Runs the migrations first (default true; a schema newer than this version is refused). */
  migrate?: boolean;
  /** How often to poll for jobs when idle (ms, default {@link DEFAULT_POLL_MS}). */
  pollMs?: number;
  /** How often to look for expired leases (ms, default {@link DEFAULT_RESCUE_MS}). */
  rescueMs?: number;
  /** How long a job waits for a worker that reaches its workdir (ms, default 10 min). */
  unreachableDeadlineMs?: number;
  /** When an unreachable job is offered again (ms, default 5 s). */
  unreachableRetryMs?: number;
  /** How long in-flight ticks may take to finish on stop before they are abandoned (ms, default 500). */
  stopGraceMs?: number;
  /** How long an active job may lack a lease before it is rescued (ms, default the lease's lifetime + 5 s). */
  orphanAfterMs?: number;
  /**
   * How long a tick's lease outlives its worker (ms; refreshed every third of
   * it): how soon another worker runs the ticks of a dead one. Default
   * {@link DEFAULT_LEASE_TTL_MS}.
   */
  leaseTtlMs?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
}

/** Dependencies tests and the bench replace. */
export interface WorkerDeps {
  /** The model adapter for a heartbeat's settings (default: the openai client over HTTP). */
  llmFor?(settings: RunSettings): Promise<HeartbeatLlm>;
  /** The user config (the API key may come from it); default: loaded from the conf store. */
  userConfig?: UserConfig | null;
}

/** What a worker did with a job it took. */
export type JobOutcome =
  /** Ticked until asleep with the next tick ahead (the commit scheduled it). */
  | "asleep"
  /** Ticked and ended (`completed`, `failed`) or was stopped (`shutdown`). */
  | "completed"
  | "failed"
  | "shutdown"
  /** Left unfinished by a stopping worker: it runs again from the last committed snapshot. */
  | "abandoned"
  /** Gone, ended or stopped: nothing ran. */
  | "skipped"
  /** Not due yet: the next job was scheduled at `nextTickAt`. */
  | "rescheduled"
  /** Another live worker holds the heartbeat's lease (its commits schedule the next tick). */
  | "leased"
  /** This worker cannot reach the workdir: offered again later. */
  | "elsewhere"
  /** Nobody reached the workdir within the deadline: the job failed, journaled. */
  | "unreachable"
  /** The tick could not run (the reason is journaled and the job failed). */
  | "error";

/** Events a worker publishes (`on`). `at` is ISO time. */
export type WorkerEvent =
  /** The worker is ready: migrated, polling. */
  | { type: "ready"; at: string; concurrency: number; database: string }
  /** A job was taken and its heartbeat's tick starts (the lease is held). */
  | { type: "tick.started"; at: string; id: string; jobId: string }
  /** The machine entered a state (JSON text for nested states). */
  | { type: "state"; at: string; id: string; state: string; tick: number }
  /** A persist was committed (`entries`: the journal lines written with it). */
  | { type: "persisted"; at: string; id: string; file: StateFile; entries: JournalEntry[] }
  /** A tool call finished. */
  | {
      type: "tool";
      at: string;
      id: string;
      tick: number;
      callId: string;
      name: string;
      status: string;
    }
  /** A tool call waits for approval, or one was decided. */
  | {
      type: "approval";
      at: string;
      id: string;
      callId: string;
      decision: "pending" | "approve" | "deny";
    }
  /** A job is done with (whatever ran or not). */
  | { type: "job"; at: string; id: string; jobId: string; outcome: JobOutcome; message?: string }
  /** Another worker's expired lease or orphaned job was cleared and the tick scheduled again now. */
  | {
      type: "rescued";
      at: string;
      id: string;
      jobId: string | null;
      why: "lease-expired" | "orphan-job";
    }
  /** Something went wrong outside a tick (fetching, the rescue scan); the worker goes on. */
  | { type: "error"; at: string; message: string }
  /** The worker stopped: every tick finished or abandoned, leases released. */
  | { type: "stopped"; at: string; finished: number; abandoned: number };

/** A running worker. */
export interface RunningWorker {
  /**
   * Stops fetching, lets in-flight ticks finish for `stopGraceMs`, then
   * abandons the rest (actor dropped, lease released, tick scheduled again
   * now from the last committed snapshot), and closes what it opened.
   * Resolves within about a second. Idempotent.
   */
  stop(): Promise<void>;
  /** Calls `listener` with every event until the returned function is called. */
  on(listener: (event: WorkerEvent) => void): () => void;
  /** Ticks running now. */
  readonly running: number;
  /** The database URL, password redacted. */
  readonly database: string;
}
