/**
 * A worker: runs the ticks of heartbeats kept in PostgreSQL, one pg-boss
 * `heartbeat-tick` job at a time per slot (at most `concurrency`). A job
 * names one heartbeat; the worker reads its row, decides (./decide.ts), and
 * when the tick is due takes the heartbeat's lease (naming the job),
 * rehydrates the actor from the stored snapshot with the same machine,
 * actors, tools and sandbox as `run` and the host (src/host/wiring.ts), lets
 * it tick until it sleeps with its next tick ahead or ends, drops it and
 * releases the lease. The store's commit schedules the next job in the
 * tick's own transaction. Every few seconds each worker clears expired
 * leases (a SIGKILLed worker's) and schedules their ticks again now, so
 * another worker runs them from the last committed snapshot. See
 * docs/architecture.md, "Workers".
 */

import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type PgBoss from "pg-boss";
import { LockCompromisedError, LockedError, StateFileError, toErrorInfo } from "../errors.js";
import { HeartbeatWiring } from "../host/wiring.js";
import { type RunningHeartbeat, startHeartbeat } from "../runtime.js";
import type { StateFile } from "../schemas/stateFile.js";
import type { Database, Executor } from "../services/pg/db.js";
import { pgDecisions } from "../services/pg/decisions.js";
import type { HeartbeatLock, HeartbeatStore } from "../services/store/index.js";
import type { PgHeartbeatStore, PgStoreBackend } from "../services/store/pgStore.js";
import { decideTick, type TickDecision, type TickRow } from "./decide.js";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_LEASE_TTL_MS,
  DEFAULT_ORPHAN_AFTER_MS,
  DEFAULT_POLL_MS,
  DEFAULT_RESCUE_MS,
  DEFAULT_STOP_GRACE_MS,
  DEFAULT_UNREACHABLE_DEADLINE_MS,
  DEFAULT_UNREACHABLE_RETRY_MS,
  type JobOutcome,
  type RunningWorker,
  type WorkerDeps,
  type WorkerEvent,
  type WorkerOptions,
} from "./types.js";

/** A tick that could not run (the database was away…) is tried again this much later. */
const ERROR_RETRY_MS = 30_000;

/** A due job whose heartbeat another live worker holds is offered again this much later. */
const LEASED_RETRY_MS = 2_000;

/** A job as the worker sees it. */
interface TickJob {
  id: string;
  data: { id?: unknown; unreachableSince?: unknown };
}

/** The heartbeat row, as far as a job needs it. */
interface HeartbeatRow {
  id: string;
  goal: string;
  workdir: string;
  settings: Record<string, unknown> | null;
  status: string | null;
  seq: number;
  hasState: boolean;
  nextTickAt: Date | null;
  stoppedAt: Date | null;
  wakeRequestedAt: Date | null;
  /** The snapshot's text, when read with it. */
  state?: string | null;
}

/** One tick in flight. */
interface InFlight {
  jobId: string;
  id: string;
  live: RunningHeartbeat | null;
  lock: HeartbeatLock | null;
  /** Set once the worker gave up on it (stop): nothing of it may be finished normally. */
  abandoned: boolean;
  done: Promise<void>;
}

/** Starts a worker; resolves once it is migrated and polling. */
export async function startWorker(
  options: WorkerOptions,
  deps: WorkerDeps = {},
): Promise<RunningWorker> {
  const worker = new Worker(options, deps);
  await worker.open();
  return worker;
}

class Worker implements RunningWorker {
  private readonly listeners = new Set<(event: WorkerEvent) => void>();
  private readonly inFlight = new Map<string, InFlight>();
  private readonly now: () => number;
  private readonly concurrency: number;
  private db!: Database;
  private ownsDb = false;
  private boss!: PgBoss;
  private wiring!: HeartbeatWiring;
  private backend!: PgStoreBackend;
  private queue!: typeof import("../services/pg/queue.js");
  private stopping: Promise<void> | null = null;
  private loop: Promise<void> | null = null;
  private pokeLoop: () => void = () => {};
  private rescueTimer: NodeJS.Timeout | undefined;
  private rescuing = false;
  private finished = 0;
  private abandonedCount = 0;
  database = "";

  constructor(
    private readonly options: WorkerOptions,
    private readonly deps: WorkerDeps,
  ) {
    this.now = options.now ?? Date.now;
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
  }

  get running(): number {
    return this.inFlight.size;
  }

  async open(): Promise<void> {
    const [{ openDatabase }, { migrateDatabase }, queue, { pgStoreBackend }] = await Promise.all([
      import("../services/pg/db.js"),
      import("../services/pg/migrations.js"),
      import("../services/pg/queue.js"),
      import("../services/store/pgStore.js"),
    ]);
    this.queue = queue;
    if (this.options.db) {
      this.db = this.options.db;
    } else {
      if (!this.options.databaseUrl) throw new Error("startWorker needs databaseUrl or db");
      this.db = await openDatabase(this.options.databaseUrl);
      this.ownsDb = true;
    }
    this.database = this.db.url;
    try {
      if (this.options.migrate !== false) await migrateDatabase(this.db);
      // The database's redactor holds its password; every write passes it.
      this.backend = pgStoreBackend(this.db, { schedule: true });
      this.boss = await queue.openBoss(this.db, {});
      this.boss.on("error", (error: unknown) =>
        this.emit({ type: "error", at: this.iso(), message: this.messageOf(error) }),
      );
      this.wiring = new HeartbeatWiring({
        env: this.options.env,
        // Heartbeats live in the database; tools still never touch a workdir's .ravenclaws.
        stateDir: (workdir) => path.join(workdir, ".ravenclaws"),
        now: this.now,
        ...(this.deps.llmFor ? { llmFor: this.deps.llmFor } : {}),
        ...(this.deps.userConfig !== undefined ? { userConfig: this.deps.userConfig } : {}),
      });
    } catch (error) {
      if (this.ownsDb) await this.db.close().catch(() => {});
      throw error;
    }
    this.loop = this.fetchLoop();
    this.rescueTimer = setInterval(
      () => void this.rescue(),
      this.options.rescueMs ?? DEFAULT_RESCUE_MS,
    );
    // After the caller got the handle (and subscribed).
    setImmediate(() =>
      this.emit({
        type: "ready",
        at: this.iso(),
        concurrency: this.concurrency,
        database: this.database,
      }),
    );
  }

  on(listener: (event: WorkerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  // ---- fetching ---------------------------------------------------------------

  /** Fetches as many due jobs as there are free slots; sleeps `pollMs` when there were none. */
  private async fetchLoop(): Promise<void> {
    const pollMs = this.options.pollMs ?? DEFAULT_POLL_MS;
    while (!this.stopping) {
      const free = this.concurrency - this.inFlight.size;
      let fetched = 0;
      if (free > 0) {
        try {
          const jobs = (await this.boss.fetch(this.queue.TICK_QUEUE, {
            batchSize: free,
          })) as TickJob[];
          fetched = jobs.length;
          for (const job of jobs) {
            if (this.stopping) {
              // Taken after the stop: hand it back at once.
              await this.handBack(job).catch(() => {});
              continue;
            }
            this.begin(job);
          }
        } catch (error) {
          this.emit({ type: "error", at: this.iso(), message: this.messageOf(error) });
        }
      }
      if (this.stopping) break;
      // Full: wait for a slot. Fewer jobs than slots: nothing else is due; poll again later.
      if (free <= 0 || fetched < free) await this.pause(free <= 0 ? 60_000 : pollMs);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.pokeLoop = done;
    });
  }

  private begin(job: TickJob): void {
    const id = typeof job.data?.id === "string" ? job.data.id : "";
    const flight: InFlight = {
      jobId: job.id,
      id,
      live: null,
      lock: null,
      abandoned: false,
      done: Promise.resolve(),
    };
    this.inFlight.set(job.id, flight);
    flight.done = this.handle(job, flight)
      .catch((error: unknown) => {
        this.emit({ type: "error", at: this.iso(), message: this.messageOf(error) });
      })
      .finally(() => {
        this.inFlight.delete(job.id);
        this.finished++;
        this.pokeLoop();
      });
  }

  // ---- one job ----------------------------------------------------------------

  private async handle(job: TickJob, flight: InFlight): Promise<void> {
    const id = flight.id;
    if (!id) {
      await this.boss.complete(this.queue.TICK_QUEUE, job.id);
      return;
    }
    const row = await this.readRow(id);
    const since = Number(job.data?.unreachableSince);
    const reachable = row ? await isReachable(row.workdir) : false;
    const decision = decideTick(
      row ? rowOf(row) : null,
      { reachable, unreachableSince: Number.isFinite(since) ? since : undefined },
      this.decideOptions(),
    );
    if (decision.kind === "run" && row) {
      await this.tick(job, flight, row);
      return;
    }
    if (decision.kind !== "run") await this.settle(job, id, row, decision);
  }

  /** Completes (or fails) a job that runs no tick, scheduling what comes next in the same transaction. */
  private async settle(
    job: TickJob,
    id: string,
    row: HeartbeatRow | null,
    decision: Exclude<TickDecision, { kind: "run" }>,
  ): Promise<void> {
    const q = this.queue;
    let outcome: JobOutcome;
    let message: string | undefined;
    switch (decision.kind) {
      case "skip":
        outcome = "skipped";
        message = decision.reason;
        await this.boss.complete(q.TICK_QUEUE, job.id, { skipped: decision.reason });
        break;
      case "reschedule":
        outcome = "rescheduled";
        await this.db.transaction(async (tx) => {
          await q.scheduleTick(tx, id, new Date(decision.at));
          await this.boss.complete(q.TICK_QUEUE, job.id, { rescheduled: true }, { db: tx });
        });
        break;
      case "elsewhere":
        outcome = "elsewhere";
        message = `workdir ${row?.workdir} is not reachable from ${os.hostname()}`;
        await this.db.transaction(async (tx) => {
          // The job's data carries since when nobody has reached it, for the deadline.
          await this.boss.complete(q.TICK_QUEUE, job.id, { elsewhere: true }, { db: tx });
          await this.boss.send(
            q.TICK_QUEUE,
            { id, unreachableSince: decision.since },
            {
              singletonKey: id,
              startAfter: new Date(decision.retryAt),
              expireInSeconds: q.TICK_EXPIRE_SECONDS,
              db: tx,
            },
          );
        });
        break;
      case "give-up": {
        outcome = "unreachable";
        const minutes = Math.round((this.now() - decision.since) / 60_000);
        message = `No worker could reach the workdir ${row?.workdir} for ${minutes} min (last tried on ${os.hostname()}): the tick was not run.`;
        await this.backend
          .heartbeat(id)
          .append([
            {
              type: "worker-error",
              at: this.iso(),
              code: "workdir-unreachable",
              message,
              workdir: row?.workdir ?? null,
              since: new Date(decision.since).toISOString(),
              hint: `Make the workdir reachable from a worker, then \`ravenclaws wake ${id} --database-url …\`.`,
            },
          ])
          .catch(() => {});
        await this.db.transaction((tx) =>
          this.failJob(tx, job.id, { code: "workdir-unreachable", message }),
        );
        break;
      }
    }
    this.emit({
      type: "job",
      at: this.iso(),
      id,
      jobId: job.id,
      outcome,
      ...(message ? { message } : {}),
    });
  }

  /** Takes the lease, rehydrates, ticks until asleep or ended, drops the actor, releases. */
  private async tick(job: TickJob, flight: InFlight, row: HeartbeatRow): Promise<void> {
    const q = this.queue;
    const id = row.id;
    const base = this.backend.heartbeat(id);
    let lock: HeartbeatLock;
    try {
      lock = await base.acquireLock({
        jobId: job.id,
        host: os.hostname(),
        ...(this.options.leaseTtlMs
          ? {
              ttlMs: this.options.leaseTtlMs,
              refreshMs: Math.max(100, Math.floor(this.options.leaseTtlMs / 3)),
            }
          : {}),
      });
    } catch (error) {
      if (!(error instanceof LockedError)) throw error;
      // A live worker ticks it, and its commits schedule the next job. It may
      // also be about to let go (asleep, releasing): the job comes back a
      // little later, so the tick is never lost to that race.
      await this.db.transaction(async (tx) => {
        await this.boss.complete(q.TICK_QUEUE, job.id, { leased: true }, { db: tx });
        await q.scheduleTick(tx, id, new Date(this.now() + LEASED_RETRY_MS));
      });
      this.emit({ type: "job", at: this.iso(), id, jobId: job.id, outcome: "leased" });
      return;
    }
    flight.lock = lock;
    let outcome: JobOutcome = "error";
    let message: string | undefined;
    let retryable = false;
    try {
      // Read again under the lease: another worker may have ticked it meanwhile.
      const fresh = await this.readRow(id, true);
      const decision: TickDecision = fresh
        ? decideTick(rowOf(fresh), { reachable: true }, this.decideOptions())
        : { kind: "skip", reason: "missing" };
      if (decision.kind !== "run" || !fresh) {
        await lock.release();
        flight.lock = null;
        if (decision.kind !== "run") await this.settle(job, id, fresh, decision);
        return;
      }
      const wake = fresh.wakeRequestedAt !== null;
      if (wake) await this.clearWake(id, fresh.wakeRequestedAt as Date);
      this.emit({ type: "tick.started", at: this.iso(), id, jobId: job.id });
      const result = await this.runTick(flight, fresh, base, wake);
      outcome = result;
    } catch (error) {
      if (flight.abandoned) return;
      message = this.messageOf(error);
      outcome = "error";
      retryable = !(error instanceof LockCompromisedError || error instanceof StateFileError);
      await this.recordError(id, error).catch(() => {});
    } finally {
      flight.live = null;
      if (!flight.abandoned) {
        await lock.release().catch(() => {});
        flight.lock = null;
      }
    }
    if (flight.abandoned) return;
    if (outcome === "error") {
      await this.db
        .transaction(async (tx) => {
          await this.failJob(tx, job.id, { message });
          // Tried again later, unless another worker moved on (its commits schedule) or the snapshot is unusable.
          if (retryable) await q.scheduleTick(tx, id, new Date(this.now() + ERROR_RETRY_MS));
        })
        .catch(() => {});
    } else {
      await this.boss.complete(q.TICK_QUEUE, job.id, { outcome }).catch(() => {});
    }
    this.emit({
      type: "job",
      at: this.iso(),
      id,
      jobId: job.id,
      outcome,
      ...(message ? { message } : {}),
    });
  }

  /** The tick itself: resolves with how it ended, once the actor is dropped. */
  private async runTick(
    flight: InFlight,
    row: HeartbeatRow,
    base: PgHeartbeatStore,
    wake: boolean,
  ): Promise<JobOutcome> {
    const id = row.id;
    const settings = await this.wiring.resolveSaved(
      id,
      (row.settings ?? {}) as Parameters<HeartbeatWiring["resolveSaved"]>[1],
    );
    // The snapshot read with the row under the lease is what the rehydration loads.
    const loaded = base.adopt(row.state ?? null);
    const store = skippingRepeat(base, row.status === "sleeping" ? row.seq : null, loaded);
    let wakePending = wake;
    let asleep: () => void = () => {};
    const dropped = new Promise<void>((resolve) => {
      asleep = resolve;
    });
    const running = await this.wiring.prepare({
      id,
      store,
      workdir: row.workdir,
      settings,
      // approve/deny from any machine write the decisions table.
      decisions: pgDecisions(this.db),
      goal: row.hasState ? undefined : row.goal,
      onProblem: (message) =>
        this.emit({ type: "error", at: this.iso(), message: `${id}: ${message}` }),
      events: {
        state: (state, context) => {
          this.emit({ type: "state", at: this.iso(), id, state, tick: context.tick });
          if (state !== "sleeping") return;
          if (wakePending) {
            wakePending = false;
            queueMicrotask(() => flight.live?.wake());
            return;
          }
          const due = context.nextTickAt
            ? Date.parse(context.nextTickAt)
            : Number.POSITIVE_INFINITY;
          // Restored in `persisting` with the tick due, it passes `sleeping` on its way to the tick.
          if (due > this.now()) asleep();
        },
        persisted: (file, entries) =>
          this.emit({ type: "persisted", at: this.iso(), id, file, entries }),
        tool: (record, tick) =>
          this.emit({
            type: "tool",
            at: this.iso(),
            id,
            tick,
            callId: record.callId,
            name: record.name,
            status: record.status,
          }),
        approvalNeeded: (pending) => {
          for (const call of pending) {
            this.emit({
              type: "approval",
              at: this.iso(),
              id,
              callId: call.callId,
              decision: "pending",
            });
          }
        },
        approvalDecided: (decision) =>
          this.emit({
            type: "approval",
            at: this.iso(),
            id,
            callId: decision.callId,
            decision: decision.decision,
          }),
      },
    });
    if (flight.abandoned) return "abandoned";
    flight.live = running;
    startHeartbeat(running);
    const snapshot = running.actor.getSnapshot();
    if (snapshot.status === "error") throw snapshot.error;
    const ended = await Promise.race([
      running.done.then((output) => output.status),
      dropped.then(() => null),
    ]);
    // Asleep with its next tick ahead: the committed row (and its job) hold all of it.
    running.actor.stop();
    if (flight.abandoned) return "abandoned";
    if (ended === null) return "asleep";
    if (ended === "completed" || ended === "failed" || ended === "shutdown") return ended;
    return "asleep";
  }

  // ---- stopping -----------------------------------------------------------------

  private async shutdown(): Promise<void> {
    clearInterval(this.rescueTimer);
    this.pokeLoop();
    await this.loop?.catch(() => {});
    const grace = this.options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    const all = () => Promise.all([...this.inFlight.values()].map((f) => f.done));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all(), new Promise((r) => (timer = setTimeout(r, grace)))]);
    clearTimeout(timer);
    const left = [...this.inFlight.values()];
    await Promise.all(left.map((flight) => this.abandon(flight).catch(() => {})));
    this.abandonedCount += left.length;
    // Pending notifications: a short wait only (a stop is within a second).
    await Promise.race([this.wiring.close(), new Promise((r) => setTimeout(r, 200).unref())]);
    await this.boss.stop({ graceful: false, close: false, wait: true }).catch(() => {});
    if (this.ownsDb) await this.db.close().catch(() => {});
    this.emit({
      type: "stopped",
      at: this.iso(),
      finished: this.finished,
      abandoned: this.abandonedCount,
    });
    this.listeners.clear();
  }

  /**
   * Gives up an in-flight tick: the actor is dropped without a write, the
   * lease released (a late commit of it is refused by the lease check), and a
   * job scheduled now, so another worker runs the tick again from the last
   * committed snapshot (the tool journal keeps effects from repeating).
   */
  private async abandon(flight: InFlight): Promise<void> {
    flight.abandoned = true;
    flight.live?.actor.stop();
    flight.live = null;
    await flight.lock?.release().catch(() => {});
    flight.lock = null;
    const q = this.queue;
    await this.db.transaction(async (tx) => {
      await this.failJob(tx, flight.jobId, { abandoned: true, message: "the worker stopped" });
      if (flight.id) await q.scheduleTick(tx, flight.id, new Date(this.now()));
    });
    this.emit({
      type: "job",
      at: this.iso(),
      id: flight.id,
      jobId: flight.jobId,
      outcome: "abandoned",
    });
  }

  /** A job fetched while stopping goes back at once (its tick runs elsewhere). */
  private async handBack(job: TickJob): Promise<void> {
    const q = this.queue;
    const id = typeof job.data?.id === "string" ? job.data.id : null;
    await this.db.transaction(async (tx) => {
      await this.failJob(tx, job.id, { abandoned: true });
      if (id) await q.scheduleTick(tx, id, new Date(this.now()));
    });
  }

  // ---- rescue -------------------------------------------------------------------

  /**
   * Clears leases that expired (their worker died: SIGKILL, a lost machine)
   * and active jobs no lease names for a while (a worker that died between
   * taking a job and its lease): each such job is failed and the tick
   * scheduled now, in one transaction, so another worker runs it again from
   * the last committed snapshot. `SKIP LOCKED`: two workers never rescue the
   * same heartbeat twice.
   */
  private async rescue(): Promise<void> {
    if (this.rescuing || this.stopping) return;
    this.rescuing = true;
    try {
      const q = this.queue;
      const orphanAfter =
        (this.options.orphanAfterMs ??
          (this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS) + DEFAULT_ORPHAN_AFTER_MS) / 1000;
      await this.db.transaction(async (tx) => {
        const expired = await tx.query(
          `DELETE FROM ravenclaws.leases WHERE heartbeat_id IN (
             SELECT heartbeat_id FROM ravenclaws.leases WHERE expires_at < now()
             FOR UPDATE SKIP LOCKED LIMIT 100)
           RETURNING heartbeat_id, job_id`,
          [],
        );
        for (const lease of expired.rows as { heartbeat_id: string; job_id: string | null }[]) {
          if (lease.job_id) {
            await this.failJob(tx, lease.job_id, {
              rescued: true,
              message: "its worker's lease expired",
            });
          }
          await q.scheduleTick(tx, lease.heartbeat_id, new Date(this.now()));
          this.emit({
            type: "rescued",
            at: this.iso(),
            id: lease.heartbeat_id,
            jobId: lease.job_id,
            why: "lease-expired",
          });
        }
      });
      await this.db.transaction(async (tx) => {
        const orphans = await tx.query(
          `SELECT j.id, j.singleton_key FROM pgboss.job j
            WHERE j.name = $1 AND j.state = 'active'
              AND j.started_on < now() - make_interval(secs => $2)
              AND NOT EXISTS (SELECT 1 FROM ravenclaws.leases l WHERE l.heartbeat_id = j.singleton_key)
            LIMIT 100 FOR UPDATE OF j SKIP LOCKED`,
          [q.TICK_QUEUE, orphanAfter],
        );
        for (const job of orphans.rows as { id: string; singleton_key: string | null }[]) {
          // A job of this worker still deciding is not an orphan.
          if (this.inFlight.has(job.id)) continue;
          await this.failJob(tx, job.id, { rescued: true, message: "active without a lease" });
          if (job.singleton_key) await q.scheduleTick(tx, job.singleton_key, new Date(this.now()));
          this.emit({
            type: "rescued",
            at: this.iso(),
            id: job.singleton_key ?? "",
            jobId: job.id,
            why: "orphan-job",
          });
        }
      });
    } catch (error) {
      this.emit({ type: "error", at: this.iso(), message: this.messageOf(error) });
    } finally {
      this.rescuing = false;
    }
  }

  // ---- the database ---------------------------------------------------------------

  /**
   * Fails a tick job for good. pg-boss would retry a failed job (the queue's
   * retry limit); a tick job never is: the worker schedules what comes next
   * itself (a tick now, later, or nothing), so a retry would run it twice.
   */
  private async failJob(
    tx: Executor,
    jobId: string,
    output: Record<string, unknown>,
  ): Promise<void> {
    await tx.query(
      "UPDATE pgboss.job SET retry_limit = retry_count WHERE name = $1 AND id = $2 AND state < 'completed'",
      [this.queue.TICK_QUEUE, jobId],
    );
    await this.boss.fail(this.queue.TICK_QUEUE, jobId, output, { db: tx });
  }

  /** The heartbeat's row; with `withState`, its snapshot's text too (the tick loads it from there). */
  private async readRow(id: string, withState = false): Promise<HeartbeatRow | null> {
    const result = await this.db.query(
      `SELECT id, goal, workdir, settings, status, seq, state IS NOT NULL AS has_state,
              next_tick_at, stopped_at, wake_requested_at${withState ? ", state::text AS state" : ""}
         FROM ravenclaws.heartbeats WHERE id = $1`,
      [id],
    );
    const r = result.rows[0] as Record<string, unknown> | undefined;
    if (!r) return null;
    return {
      id: String(r.id),
      goal: String(r.goal ?? ""),
      workdir: String(r.workdir),
      settings: (r.settings as Record<string, unknown> | null) ?? null,
      status: (r.status as string | null) ?? null,
      seq: Number(r.seq ?? 0),
      hasState: r.has_state === true,
      nextTickAt: asDate(r.next_tick_at),
      stoppedAt: asDate(r.stopped_at),
      wakeRequestedAt: asDate(r.wake_requested_at),
      ...(withState ? { state: (r.state as string | null) ?? null } : {}),
    };
  }

  /** A wake is used up by the tick it started (a later wake sets it again). */
  private async clearWake(id: string, asked: Date): Promise<void> {
    await this.db.query(
      "UPDATE ravenclaws.heartbeats SET wake_requested_at = NULL WHERE id = $1 AND wake_requested_at <= $2",
      [id, asked],
    );
  }

  /** Journals why a tick could not run (the heartbeat's own record, as `logs` shows it). */
  private async recordError(id: string, error: unknown): Promise<void> {
    if (error instanceof LockCompromisedError) return; // another worker moved on: nothing to record
    const info = toErrorInfo(error);
    await this.backend.heartbeat(id).append([
      {
        type: "worker-error",
        at: this.iso(),
        code: error instanceof StateFileError ? "state-unusable" : info.code,
        message: info.message,
        host: os.hostname(),
        pid: process.pid,
      },
    ]);
  }

  private decideOptions() {
    return {
      now: this.now(),
      unreachableDeadlineMs: this.options.unreachableDeadlineMs ?? DEFAULT_UNREACHABLE_DEADLINE_MS,
      unreachableRetryMs: this.options.unreachableRetryMs ?? DEFAULT_UNREACHABLE_RETRY_MS,
    };
  }

  private messageOf(error: unknown): string {
    return toErrorInfo(error).message;
  }

  private emit(event: WorkerEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

function rowOf(row: HeartbeatRow): TickRow {
  return {
    status: row.hasState ? row.status : null,
    nextTickAt: row.nextTickAt ? row.nextTickAt.getTime() : null,
    stopped: row.stoppedAt !== null,
    wakeRequested: row.wakeRequestedAt !== null,
  };
}

function asDate(value: unknown): Date | null {
  if (value === null || value === undefined) return null;
  return value instanceof Date ? value : new Date(String(value));
}

/**
 * Whether this worker can use the workdir: a directory it can read, write
 * and enter. Bounded: a hung network mount counts as unreachable.
 */
async function isReachable(workdir: string): Promise<boolean> {
  const check = fs
    .stat(workdir)
    .then(async (stat) => {
      if (!stat.isDirectory()) return false;
      await fs.access(workdir, fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK);
      return true;
    })
    .catch(() => false);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), 5_000);
  });
  const reachable = await Promise.race([check, timeout]);
  clearTimeout(timer);
  return reachable;
}

/**
 * The store of a rehydrated tick. Restoring the snapshot saved in
 * `persisting` repeats that persist; the row already is that snapshot (seq,
 * `sleeping`), so the repeat is skipped (its journal lines would be skipped
 * by seq anyway, and the next job is already scheduled).
 */
function skippingRepeat(
  store: HeartbeatStore,
  seq: number | null,
  loaded: StateFile | null,
): HeartbeatStore {
  let first = true;
  let primed = true;
  const skip = (state: StateFile) => {
    const repeat = first && seq !== null && state.seq === seq && state.status === "sleeping";
    first = false;
    return repeat;
  };
  return {
    get paths() {
      return store.paths;
    },
    ensureDir: () => store.ensureDir(),
    load: () => {
      // The first load is the snapshot already read (and adopted) under the lease.
      if (!primed) return store.load();
      primed = false;
      return Promise.resolve(loaded);
    },
    peek: () => store.peek(),
    save: (state) => (skip(state) ? Promise.resolve() : store.save(state)),
    append: (entries) => store.append(entries),
    commit: (state, entries) => (skip(state) ? Promise.resolve() : store.commit(state, entries)),
    readJournal: () => store.readJournal(),
    recover: () => store.recover(),
    acquireLock: (options) => store.acquireLock(options),
  };
}
