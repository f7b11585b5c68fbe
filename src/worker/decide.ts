/**
 * What a worker does with one `heartbeat-tick` job, decided from the
 * heartbeat's row as it is when the job is taken. Pure (time and the
 * workdir's reachability arrive as data), so every branch is unit-tested.
 */

/** The parts of a heartbeat's row the decision reads. */
export interface TickRow {
  /** The StateFile status (`sleeping`, `executing`, `shutdown`, `completed`, `failed`), null before the first save. */
  status: string | null;
  /** When its next tick is due (ms since the epoch), null when none is planned. */
  nextTickAt: number | null;
  /** Stopped on purpose (`ravenclaws stop`): nothing runs until `start`. */
  stopped: boolean;
  /** A wake was asked (`ravenclaws wake`): the tick runs now whatever `nextTickAt` says. */
  wakeRequested: boolean;
}

/** Where the job's workdir stands on this worker. */
export interface Reachability {
  /** The workdir is a directory this worker can read and write. */
  reachable: boolean;
  /** Since when the heartbeat has been waiting for a worker that reaches it (ms), from the job's data. */
  unreachableSince?: number | undefined;
}

/** Job decisions. */
export type TickDecision =
  /** The heartbeat is gone, ended or stopped: the job completes, nothing runs. */
  | { kind: "skip"; reason: "missing" | "ended" | "stopped" | "not-planned" }
  /** Not due (a job that came early, a duplicate): the next job is scheduled for `at`, this one completes. */
  | { kind: "reschedule"; at: number }
  /** This worker cannot reach the workdir: the job goes back for another worker, tried again at `retryAt`. */
  | { kind: "elsewhere"; retryAt: number; since: number }
  /** Nobody reached the workdir within the deadline: the job fails, the reason is journaled. */
  | { kind: "give-up"; since: number }
  /** Run the tick here. */
  | { kind: "run" };

/** Options of {@link decideTick}. */
export interface DecideOptions {
  /** Now (ms since the epoch). */
  now: number;
  /** How long a job waits for a worker that reaches its workdir before it fails (ms). */
  unreachableDeadlineMs: number;
  /** How long until an unreachable job is offered again (ms). */
  unreachableRetryMs: number;
}

/** Decides what to do with a tick job of a heartbeat whose row is `row` (null: no such heartbeat). */
export function decideTick(
  row: TickRow | null,
  where: Reachability,
  options: DecideOptions,
): TickDecision {
  if (!row) return { kind: "skip", reason: "missing" };
  if (row.status === "completed" || row.status === "failed")
    return { kind: "skip", reason: "ended" };
  if (row.stopped) return { kind: "skip", reason: "stopped" };
  // A heartbeat left mid-tick (`executing`) or shut down (`shutdown`) goes on now, as `run --id` would.
  const resumes = row.status === "executing" || row.status === "shutdown" || row.status === null;
  if (!resumes && !row.wakeRequested && row.nextTickAt !== null && row.nextTickAt > options.now) {
    return { kind: "reschedule", at: row.nextTickAt };
  }
  if (!resumes && !row.wakeRequested && row.nextTickAt === null) {
    // Sleeping with no tick planned: nothing to do until a wake.
    return { kind: "skip", reason: "not-planned" };
  }
  if (!where.reachable) {
    const since = where.unreachableSince ?? options.now;
    if (options.now - since >= options.unreachableDeadlineMs) return { kind: "give-up", since };
    return { kind: "elsewhere", retryAt: options.now + options.unreachableRetryMs, since };
  }
  return { kind: "run" };
}
