/**
 * The host: the engine that runs the heartbeats of one state dir in one
 * process (`ravenclaws serve` hosts many, `run` one). This file is the
 * contract the HTTP API builds on; the implementation is `createHost` in
 * `src/host/host.ts`.
 *
 * A hosted heartbeat is the same heartbeat actor, store, lock and journal as
 * under `run`. Between ticks it holds no live actor: the host keeps a light
 * record (see {@link HeartbeatSummary}) and rehydrates the actor from its
 * state file when a tick is due, runs the tick, persists and drops it.
 */
import type { Assessment, Plan, TokenUsage } from "../machines/heartbeat.types.js";
import type { SavedSettings } from "../schemas/stateFile.js";

/**
 * What a hosted heartbeat is doing, as the host sees it.
 * - `sleeping`: waiting for its next tick (no live actor).
 * - `queued`: its tick is due and waits for a free tick slot (`--max-concurrent-ticks`).
 * - `ticking`: a live actor is working on a tick (assessing, planning, executing, persisting).
 * - `stopped`: stopped on purpose (`ravenclaws stop`, the API, the page); stays so across
 *   restarts until started again (`ravenclaws start`, the API, the page).
 * - `completed` / `failed`: ended; nothing runs (a start does not continue it, `run --continue` does).
 * - `unavailable`: its state file cannot be used, or its lock is held by another process
 *   (a `run` of the same id); `problem` says which.
 */
export type HostedStatus =
  | "sleeping"
  | "queued"
  | "ticking"
  | "stopped"
  | "completed"
  | "failed"
  | "unavailable";

/**
 * One row of the overview. Kept in memory and updated on every persist, so
 * {@link Host.list} costs no file access (1,000 heartbeats well under 100 ms).
 */
export interface HeartbeatSummary {
  id: string;
  /** The goal, clipped to 200 characters. */
  goal: string;
  status: HostedStatus;
  /**
   * The machine's state value as JSON text (`"sleeping"`, `"executing"`, or
   * `{"executing":"calling"}` style for nested states) while a live actor
   * runs, else the state the state file was saved in (`persisting`).
   */
  state: string;
  /** Finished ticks. */
  tick: number;
  /** When the next tick is due (ISO), null when none is planned. */
  nextTickAt: string | null;
  /** Lifetime usage (costUsd when prices are set). */
  usage: TokenUsage & { costUsd?: number };
  /** Outcome of the last finished tick (`ok`, `idle`, `failed`, `interrupted`), null before the first. */
  lastOutcome: string | null;
  /** Why it ended or stopped (`goal-met`, `max-ticks`, `signal`, …), null while it runs. */
  reason: string | null;
  /** Tool calls waiting for an approval (0 until approvals are wired in). */
  pendingApprovals: number;
  /** The heartbeat's workdir (where its tools work). */
  workdir: string;
  updatedAt: string | null;
  /** Why it is `unavailable`; null otherwise. */
  problem: string | null;
}

/** One heartbeat in detail ({@link Host.get}). */
export interface HeartbeatDetail extends HeartbeatSummary {
  /** The full goal. */
  goalText: string;
  createdAt: string | null;
  /** The progress summary the heartbeat keeps across ticks. */
  progress: string;
  lastAssessment: Assessment | null;
  lastPlan: Plan | null;
  lastResult: string | null;
  /** The settings saved with the heartbeat (never the API key, which is never stored). */
  settings: SavedSettings;
  /** The state file's path. */
  stateFile: string;
  /** The journal's path. */
  journal: string;
  error: { code: string; message: string } | null;
}

/** What {@link Host.create} needs. */
export interface CreateHeartbeatRequest {
  goal: string;
  /** Optional id (letters, digits, `-`, `_`); a new UUID when absent. */
  id?: string;
  /** The heartbeat's workdir; default: the host's workdir. Must exist. */
  workdir?: string;
  /**
   * Settings by the names of the settings table (`tickInterval`, `maxTicks`,
   * `model`, `baseUrl`, …; heartbeat-scoped ones only). Values as their type
   * (numbers, booleans, strings, string lists) or as text as on the command
   * line. Missing ones come from the host's defaults (serve's `--base-url`,
   * `--model`), then the environment, toml, user config and defaults, as for
   * `run`. `apiKey` is refused: the key is the host's.
   */
  settings?: Record<string, unknown>;
}

/** Events the host publishes ({@link Host.subscribe}). `at` is ISO time. */
export type HostEvent =
  /** A heartbeat was added (created, or found when the host started). */
  | { type: "heartbeat.added"; at: string; id: string; summary: HeartbeatSummary }
  /** A heartbeat is no longer hosted (its lock was taken over, or its state file removed). */
  | { type: "heartbeat.removed"; at: string; id: string }
  /** The machine entered a state, or the host status changed (queued, stopped, …). */
  | { type: "state"; at: string; id: string; summary: HeartbeatSummary }
  /** A tick ended and was persisted (`entries`: the journal lines written, as `logs --json` shows them). */
  | {
      type: "tick";
      at: string;
      id: string;
      summary: HeartbeatSummary;
      entries: Record<string, unknown>[];
    }
  /** A tool call finished. */
  | {
      type: "tool";
      at: string;
      id: string;
      tick: number;
      call: { callId: string; name: string; status: string };
    }
  /** A tool call waits for an approval, or one was decided (wired once approvals land). */
  | {
      type: "approval";
      at: string;
      id: string;
      callId: string;
      decision: "pending" | "approve" | "deny";
    };

/** Result of a control request. */
export interface ControlResult {
  /** What happened, one sentence (shown by the CLI and the API). */
  message: string;
  summary: HeartbeatSummary;
}

/** The host's public face: what `serve`'s API and `run` use. */
export interface Host {
  /** Every hosted heartbeat, cheap (in-memory records; no file access). */
  list(): HeartbeatSummary[];
  /** One heartbeat in detail (reads its state file once), or null when unknown. */
  get(id: string): Promise<HeartbeatDetail | null>;
  /**
   * Creates a heartbeat and starts hosting it: it is on disk (state file
   * written, lock taken) when this resolves, and its first tick is queued.
   * Throws `UsageError` (code and option naming the field) for bad input.
   */
  create(request: CreateHeartbeatRequest): Promise<HeartbeatSummary>;
  /** Starts the next tick now (a sleeping heartbeat is queued at once). Throws `CommandFailedError` `not-found` for an unknown id. */
  wake(id: string): Promise<ControlResult>;
  /**
   * Stops a heartbeat on purpose: a live tick is interrupted and saved as
   * `shutdown`, the lock is released, and the stop is remembered across
   * restarts until {@link Host.start}.
   */
  stop(id: string): Promise<ControlResult>;
  /** Clears a stop on purpose and hosts the heartbeat again (it ticks when due). */
  start(id: string): Promise<ControlResult>;
  /** Counts: heartbeats hosted, live actors (ticking), ticks queued and running. Cheap. */
  stats(): HostStats;
  /** Calls `listener` with every event until the returned function is called. */
  subscribe(listener: (event: HostEvent) => void): () => void;
  /**
   * Stops every live tick (each saved as `shutdown`, within a second), keeps
   * the sleeping ones as they are on disk (so a restarted host runs them
   * again), and releases every lock. Not a stop on purpose.
   */
  close(): Promise<void>;
}

/** What the API asks of a journal ({@link ServedHost.journal}). */
export interface JournalQuery {
  /** The last this many entries (oldest first). */
  limit: number;
  /** Only entries of these types (all when absent or empty). */
  types?: string[];
}

/** A journal tail ({@link ServedHost.journal}). */
export interface JournalPage {
  entries: Array<{ type: string; [key: string]: unknown }>;
  /** True when older entries were left out. */
  truncated: boolean;
}

/**
 * What `serve`'s API serves: a {@link Host} (the state dir's, whose overview
 * is in memory), or the database's (`src/host/dbHost.ts`), whose overview is
 * one query and whose journal is a table rather than the file at
 * {@link HeartbeatDetail.journal}.
 */
export interface ServedHost extends Omit<Host, "list"> {
  /** Every heartbeat (the database host: one query). */
  list(): HeartbeatSummary[] | Promise<HeartbeatSummary[]>;
  /** Whether heartbeat `id` is served here; absent: looked up in {@link list}. */
  has?(id: string): Promise<boolean>;
  /** The journal's tail; absent: the server reads the file {@link HeartbeatDetail.journal}. */
  journal?(id: string, query: JournalQuery): Promise<JournalPage>;
}

/** What {@link Host.stats} reports. */
export interface HostStats {
  /** Heartbeats known to the host (any status). */
  hosted: number;
  /** Heartbeats holding a live actor right now (only those ticking). */
  live: number;
  /** Due ticks waiting for a slot. */
  queued: number;
  /** Ticks running (at most `maxConcurrentTicks`). */
  running: number;
}

/** Options of `createHost`. */
export interface HostOptions {
  /** The state dir whose heartbeats are hosted. */
  stateDir: string;
  /** Default workdir of heartbeats (serve's `--workdir`). */
  workdir: string;
  /** At most this many ticks run at the same time (default {@link DEFAULT_MAX_CONCURRENT_TICKS}). */
  maxConcurrentTicks?: number;
  /**
   * Settings by the settings table's names that act as flags for heartbeats
   * created through this host (serve's `--base-url`, `--model`…). Never stored
   * as such: they become the new heartbeat's saved settings.
   */
  defaults?: Record<string, unknown>;
  /** The process environment (the API key comes from here or the user config, never from a heartbeat). */
  env: NodeJS.ProcessEnv;
  /** Host every heartbeat of the state dir found at start (serve), or only those created/added (run). Default true. */
  adoptExisting?: boolean;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
}

/** Default of `--max-concurrent-ticks`. */
export const DEFAULT_MAX_CONCURRENT_TICKS = 4;
