/**
 * The PostgreSQL store: each heartbeat is a row of `ravenclaws.heartbeats`
 * (the validated state file as `jsonb`), its journal rows in
 * `ravenclaws.journal`, and while a process runs it, a lease row in
 * `ravenclaws.leases`.
 *
 * A persist is ONE transaction: the heartbeat's row is locked, the write is
 * compared-and-set on `seq` (and on the lease token while a lock is held), the
 * journal takes the entries above the heartbeat's `journal_seq`, and, when
 * the heartbeat sleeps toward a next tick and is not stopped, the next tick's
 * job is queued. So a stale writer is refused inside the transaction, a tick
 * is journaled at most once, and the next tick exists exactly when the
 * snapshot that asks for it does. Everything written passes the redactor
 * (the URL's password and the caller's secrets).
 */
import { randomBytes } from "node:crypto";
import * as os from "node:os";
import {
  LockCompromisedError,
  LockedError,
  type LockHolder,
  PersistError,
  StateFileError,
} from "../../errors.js";
import type { SavedSettings, StateFile } from "../../schemas/stateFile.js";
import type { Database, Executor } from "../pg/db.js";
import { scheduleTick } from "../pg/queue.js";
import type { Redactor } from "../redact.js";
import { isAlive, LOCK_REFRESH_MS } from "./lock.js";
import { checkStateFile, parseStateFile } from "./stateFile.js";
import type {
  AcquireLockOptions,
  HeartbeatLock,
  HeartbeatPaths,
  HeartbeatStore,
  HeartbeatStoreBackend,
  JournalEntry,
  RecoverResult,
} from "./types.js";

/** Options of {@link pgStoreBackend}. */
export interface PgStoreOptions {
  /** Applied to everything written, on top of the database's own (the URL's password). */
  redact?: Redactor;
  /** Queue the next tick's job in each commit that asks for one (workers: true; default false). */
  schedule?: boolean;
}

/** Options of {@link PgHeartbeatStore.acquireLock}. */
export interface PgLockOptions extends AcquireLockOptions {
  /** The pg-boss job this holder runs (recorded in the lease). */
  jobId?: string;
  /** After how long without a refresh the lease expires (default 3 × `refreshMs`). */
  ttlMs?: number;
}

/** What `create` records of a heartbeat before its first persist. */
export interface PgCreateOptions {
  workdir: string;
  goal: string;
  /** The saved settings (never a secret). */
  settings?: SavedSettings;
  /** When its first tick is due (default: now); a job is queued when the backend schedules. */
  firstTickAt?: Date;
}

/** One heartbeat of {@link PgStoreBackend.summaries}: its row, without the snapshot. */
export interface PgHeartbeatSummary {
  id: string;
  goal: string;
  workdir: string;
  settings: SavedSettings;
  /** The state file's status (`created` before the first persist). */
  status: string;
  tick: number;
  seq: number;
  nextTickAt: string | null;
  stoppedAt: string | null;
  wakeRequestedAt: string | null;
  createdAt: string;
  updatedAt: string;
  /** The live holder of its lease (a worker running a tick), or null. */
  holder: (LockHolder & { jobId: string | null }) | null;
}

/** The heartbeats of a database. */
export interface PgStoreBackend extends HeartbeatStoreBackend {
  heartbeat(id: string): PgHeartbeatStore;
  /** Makes heartbeat `id` (its row, before any persist); `false` when it exists already. */
  create(id: string, options: PgCreateOptions): Promise<boolean>;
  /** Every heartbeat's row without its snapshot, sorted by id: one query. */
  summaries(): Promise<PgHeartbeatSummary[]>;
  readonly db: Database;
}

/** Per-heartbeat transaction lock namespace ("RC"). */
const HEARTBEAT_LOCK_CLASS = 0x5243;

const iso = (value: Date | string | null): string | null =>
  value === null ? null : value instanceof Date ? value.toISOString() : value;

/** Where a heartbeat is kept, for messages: the redacted URL and the table. */
export function pgHeartbeatPaths(url: string, id: string): HeartbeatPaths {
  return {
    stateDir: url,
    stateFile: `${url} ravenclaws.heartbeats[${id}]`,
    journal: `${url} ravenclaws.journal[${id}]`,
    lock: `${url} ravenclaws.leases[${id}]`,
  };
}

const describeHolder = (holder: LockHolder | null) =>
  holder ? `pid ${holder.pid} on ${holder.host}, since ${holder.since}` : "an unknown process";

function holderOf(owner: unknown): LockHolder | null {
  const o = owner as Partial<LockHolder> | null;
  return o && typeof o.pid === "number" && typeof o.host === "string" && typeof o.since === "string"
    ? { pid: o.pid, host: o.host, since: o.since }
    : null;
}

/**
 * The store of one heartbeat in the database. Writes are serialised in call
 * order; a write refused by the compare-and-set, or made after the lease was
 * lost, throws {@link LockCompromisedError} and every later write does too.
 */
export class PgHeartbeatStore implements HeartbeatStore {
  readonly paths: HeartbeatPaths;
  private queue: Promise<unknown> = Promise.resolve();
  /** The `seq` this store last loaded or wrote; -1: none; undefined: never looked. */
  private knownSeq: number | undefined;
  private lock: PgLease | null = null;
  private compromised: LockCompromisedError | null = null;

  constructor(
    private readonly db: Database,
    readonly id: string,
    private readonly options: { redact: Redactor; schedule: boolean },
  ) {
    this.paths = pgHeartbeatPaths(db.url, id);
  }

  /** Nothing to make: the database exists (it was opened and migrated). */
  async ensureDir(): Promise<void> {}

  async load(): Promise<StateFile | null> {
    const state = await this.read();
    this.knownSeq = state ? state.seq : -1;
    return state;
  }

  /**
   * What {@link load} does with a snapshot the caller already read from the
   * row (`state::text`, e.g. with the row it read under the lease): checked,
   * and the seq later writes are compared with.
   */
  adopt(text: string | null): StateFile | null {
    const state = this.parse(text);
    this.knownSeq = state ? state.seq : -1;
    return state;
  }

  peek(): Promise<StateFile | null> {
    return this.read();
  }

  save(state: StateFile): Promise<void> {
    return this.commit(state, []);
  }

  append(entries: JournalEntry[]): Promise<void> {
    return this.serialised(() =>
      this.write(async (tx) => {
        await this.lockHeartbeat(tx);
        await this.fence(tx);
        await this.journal(tx, entries);
      }),
    );
  }

  /**
   * One transaction: the heartbeat's row locked, the lease and `seq` checked,
   * the snapshot written, the new journal entries added, the next tick queued.
   */
  commit(state: StateFile, entries: JournalEntry[]): Promise<void> {
    return this.serialised(async () => {
      const text = this.options.redact(JSON.stringify(state));
      // The columns come from the redacted text, so no secret reaches them either.
      const stored = JSON.parse(text) as StateFile;
      await this.write(async (tx) => {
        await this.lockHeartbeat(tx);
        if (this.compromised) throw this.compromised;
        // One read under the lock: the lease (held until the commit), seq, stop, journal_seq.
        const { rows } = await tx.query<{
          seq: number | null;
          has_state: boolean | null;
          stopped: boolean | null;
          journal_seq: number;
          leased: boolean;
        }>(
          `WITH lease AS (
             SELECT 1 FROM ravenclaws.leases WHERE heartbeat_id = $1 AND token = $2 FOR SHARE)
           SELECT h.seq, h.state IS NOT NULL AS has_state, h.stopped_at IS NOT NULL AS stopped,
                  COALESCE(h.journal_seq,
                    (SELECT max(seq) FROM ravenclaws.journal WHERE heartbeat_id = $1), 0) AS journal_seq,
                  EXISTS (SELECT 1 FROM lease) AS leased
             FROM (SELECT 1) AS one
             LEFT JOIN ravenclaws.heartbeats h ON h.id = $1`,
          [this.id, this.lock?.token ?? null],
        );
        const row = rows[0];
        if (this.lock && !row?.leased) throw this.lock.lost(await this.holderNow(tx));
        const expected =
          this.knownSeq === undefined ? state.seq : Math.min(this.knownSeq, state.seq);
        if (row?.has_state && (row.seq ?? 0) > expected)
          throw this.markCompromised(
            `Heartbeat "${this.id}" was advanced by another process (seq ${row.seq}; this process is at seq ${state.seq}); this one stopped writing.`,
          );
        const { texts, top } = this.fresh(entries, row?.journal_seq ?? 0);
        // The row, its journal rows and journal_seq in one statement.
        await tx.query(
          `WITH up AS (
             INSERT INTO ravenclaws.heartbeats
               (id, goal, workdir, settings, status, tick, seq, state, next_tick_at, journal_seq)
             VALUES ($1, $2, COALESCE($3::jsonb->>'workdir', ''), $3::jsonb, $4, $5, $6, $7::jsonb, $8, $9)
             ON CONFLICT (id) DO UPDATE SET
               goal = EXCLUDED.goal, settings = EXCLUDED.settings, status = EXCLUDED.status,
               tick = EXCLUDED.tick, seq = EXCLUDED.seq, state = EXCLUDED.state,
               next_tick_at = EXCLUDED.next_tick_at, journal_seq = EXCLUDED.journal_seq,
               updated_at = now()
             RETURNING 1)
           INSERT INTO ravenclaws.journal (heartbeat_id, seq, type, entry)
           SELECT $1, (e->>'seq')::int, e->>'type', e
             FROM unnest($10::jsonb[]) WITH ORDINALITY AS t(e, n) ORDER BY n`,
          [
            this.id,
            stored.goal,
            JSON.stringify(stored.settings ?? {}),
            stored.status,
            stored.tick,
            stored.seq,
            text,
            stored.nextTickAt,
            top,
            texts,
          ],
        );
        if (
          this.options.schedule &&
          stored.status === "sleeping" &&
          stored.nextTickAt &&
          !row?.stopped
        )
          await scheduleTick(tx, this.id, new Date(stored.nextTickAt));
      });
      this.knownSeq = state.seq;
    });
  }

  async readJournal(): Promise<JournalEntry[]> {
    const { rows } = await this.db.query<{ entry: JournalEntry }>(
      "SELECT entry FROM ravenclaws.journal WHERE heartbeat_id = $1 ORDER BY id",
      [this.id],
    );
    return rows.map((r) => r.entry);
  }

  /** A transaction cannot tear a snapshot: there is only `healthy` or `no-state`. */
  async recover(): Promise<RecoverResult> {
    const state = await this.load();
    if (!state)
      return {
        action: "none",
        reason: "no-state",
        message: `--recover: heartbeat "${this.id}" has no snapshot in ${this.db.url}; nothing to recover.`,
      };
    return {
      action: "none",
      reason: "healthy",
      tick: state.tick,
      message: `--recover: heartbeat "${this.id}" in ${this.db.url} is fine (tick ${state.tick}); nothing to recover, resuming normally.`,
    };
  }

  /**
   * Takes the heartbeat's lease: a row of `ravenclaws.leases` with the holder
   * and a random token, expiring `ttlMs` after its last refresh. A lease that
   * expired (its holder died or lost the database), or whose holder's pid no
   * longer runs on this host, is taken over; a live one is refused with
   * {@link LockedError} naming its holder. While held it is refreshed every
   * `refreshMs`; a refresh that finds another token marks it compromised, and
   * every write of this store is fenced by the token.
   */
  async acquireLock(options: PgLockOptions = {}): Promise<HeartbeatLock> {
    const refreshMs = options.refreshMs ?? LOCK_REFRESH_MS;
    const ttlMs = options.ttlMs ?? 3 * refreshMs;
    const now = options.now ?? Date.now;
    const holder: LockHolder = {
      pid: process.pid,
      host: options.host ?? os.hostname(),
      since: new Date(now()).toISOString(),
    };
    const token = randomBytes(12).toString("hex");
    const owner = JSON.stringify({ ...holder, jobId: options.jobId ?? null });
    for (let attempt = 0; attempt < 3; attempt++) {
      const { rows } = await this.db.query<{ token: string }>(
        `INSERT INTO ravenclaws.leases (heartbeat_id, owner, token, job_id, expires_at)
         VALUES ($1, $2::jsonb, $3, $4, now() + $5 * interval '1 millisecond')
         ON CONFLICT (heartbeat_id) DO UPDATE SET owner = EXCLUDED.owner, token = EXCLUDED.token,
           job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
         WHERE ravenclaws.leases.expires_at < now()
         RETURNING token`,
        [this.id, owner, token, options.jobId ?? null, ttlMs],
      );
      if (rows[0]?.token === token) {
        const lease = new PgLease(
          this.db,
          this.id,
          this.paths.lock,
          holder,
          token,
          refreshMs,
          ttlMs,
        );
        this.lock = lease;
        lease.onCompromised((error) => {
          this.compromised ??= error;
        });
        return lease;
      }
      const current = await this.db.query<{ owner: unknown; token: string }>(
        "SELECT owner, token FROM ravenclaws.leases WHERE heartbeat_id = $1",
        [this.id],
      );
      const row = current.rows[0];
      if (!row) continue; // released meanwhile: try again
      const other = holderOf(row.owner);
      if (other && other.host === holder.host && !isAlive(other.pid)) {
        // Its process is gone: take over only the lease we judged.
        await this.db.query(
          "DELETE FROM ravenclaws.leases WHERE heartbeat_id = $1 AND token = $2",
          [this.id, row.token],
        );
        continue;
      }
      throw new LockedError(
        `Heartbeat "${this.id}" is already running: its lease in ${this.db.url} is held by ${describeHolder(other)}.`,
        this.paths.lock,
        other,
        {
          hint: "Stop that process first. A lease whose holder is gone is taken over once it expires.",
        },
      );
    }
    throw new LockedError(
      `Could not take the lease of heartbeat "${this.id}": other processes keep taking it.`,
      this.paths.lock,
      null,
    );
  }

  private async read(): Promise<StateFile | null> {
    const { rows } = await this.db.query<{ state: string | null }>(
      "SELECT state::text AS state FROM ravenclaws.heartbeats WHERE id = $1",
      [this.id],
    );
    return this.parse(rows[0]?.state);
  }

  private parse(text: string | null | undefined): StateFile | null {
    if (text === undefined || text === null) return null;
    const state = parseStateFile(text, this.paths.stateFile);
    checkStateFile(state, this.paths.stateFile);
    if (state.id !== this.id)
      throw new StateFileError(
        `The snapshot of heartbeat "${this.id}" in ${this.db.url} holds heartbeat "${state.id}".`,
        this.paths.stateFile,
        "invalid",
        { hint: "It was left as it is; it was not written by ravenclaws as it is." },
      );
    return state;
  }

  /** Serialises writes to this heartbeat across processes for the transaction's length. */
  private async lockHeartbeat(tx: Executor): Promise<void> {
    await tx.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [
      HEARTBEAT_LOCK_CLASS,
      this.id,
    ]);
  }

  /** Inside the transaction: the lease must still be this store's. */
  private async fence(tx: Executor): Promise<void> {
    if (this.compromised) throw this.compromised;
    if (!this.lock) return;
    const { rows } = await tx.query<{ owner: unknown }>(
      "SELECT owner FROM ravenclaws.leases WHERE heartbeat_id = $1 AND token = $2 FOR SHARE",
      [this.id, this.lock.token],
    );
    if (rows.length === 0) throw this.lock.lost(await this.holderNow(tx));
  }

  private async holderNow(tx: Executor): Promise<LockHolder | null | undefined> {
    const { rows } = await tx.query<{ owner: unknown }>(
      "SELECT owner FROM ravenclaws.leases WHERE heartbeat_id = $1",
      [this.id],
    );
    return rows[0] ? holderOf(rows[0].owner) : undefined;
  }

  /** Journals the entries above the heartbeat's `journal_seq` (entries without a seq always). */
  private async journal(tx: Executor, entries: JournalEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const { rows } = await tx.query<{ journal_seq: number }>(
      `SELECT COALESCE(
         (SELECT journal_seq FROM ravenclaws.heartbeats WHERE id = $1),
         (SELECT max(seq) FROM ravenclaws.journal WHERE heartbeat_id = $1),
         -1) AS journal_seq`,
      [this.id],
    );
    const { texts, top } = this.fresh(entries, rows[0]?.journal_seq ?? -1);
    if (texts.length === 0) return;
    await tx.query(
      `INSERT INTO ravenclaws.journal (heartbeat_id, seq, type, entry)
       SELECT $1, (e->>'seq')::int, e->>'type', e
         FROM unnest($2::jsonb[]) WITH ORDINALITY AS t(e, n) ORDER BY n`,
      [this.id, texts],
    );
    await tx.query(
      "UPDATE ravenclaws.heartbeats SET journal_seq = $2 WHERE id = $1 AND journal_seq <> $2",
      [this.id, top],
    );
  }

  /**
   * The entries to journal above `journalSeq` (a `recover` entry, and entries
   * without a seq, always), redacted, and the journal_seq after them.
   */
  private fresh(entries: JournalEntry[], journalSeq: number): { texts: string[]; top: number } {
    const recovery = entries.find((e) => e.type === "recover");
    const floor = recovery?.seq ?? journalSeq;
    const fresh = entries.filter(
      (e) => e.type === "recover" || e.seq === undefined || e.seq > floor,
    );
    const texts = fresh.map((e) => this.options.redact(JSON.stringify(e)));
    let top = recovery?.seq ?? floor;
    for (const e of fresh) if (e.seq !== undefined) top = Math.max(top, e.seq);
    return { texts, top };
  }

  /** Runs a write transaction; a failure other than a refusal becomes a {@link PersistError}. */
  private async write(fn: (tx: Executor) => Promise<void>): Promise<void> {
    if (this.compromised) throw this.compromised;
    try {
      await this.db.transaction(fn);
    } catch (error) {
      if (error instanceof LockCompromisedError) {
        this.compromised ??= error;
        throw this.compromised;
      }
      if (error instanceof StateFileError || error instanceof PersistError) throw error;
      throw new PersistError(
        `Cannot write heartbeat "${this.id}" to ${this.db.url}: ${this.db.redact((error as Error).message)}`,
        this.paths.stateFile,
        { cause: error, hint: (error as { hint?: string }).hint },
      );
    }
  }

  private markCompromised(message: string): LockCompromisedError {
    this.compromised ??= new LockCompromisedError(message, this.paths.lock, {
      hint: "Another process now runs this heartbeat; nothing more was written by this one.",
    });
    return this.compromised;
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => {});
    return next;
  }
}

/** A held lease row. */
class PgLease implements HeartbeatLock {
  private error: LockCompromisedError | null = null;
  private readonly listeners = new Set<(error: LockCompromisedError) => void>();
  private released = false;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database,
    private readonly id: string,
    private readonly where: string,
    readonly holder: LockHolder,
    readonly token: string,
    refreshMs: number,
    private readonly ttlMs: number,
  ) {
    if (refreshMs > 0) {
      this.timer = setInterval(() => {
        this.refresh().catch(() => {
          // The database is unreachable: the next refresh tries again; the lease may expire meanwhile.
        });
      }, refreshMs);
      this.timer.unref();
    }
  }

  get compromised(): LockCompromisedError | null {
    return this.error;
  }

  onCompromised(listener: (error: LockCompromisedError) => void): () => void {
    if (this.error) {
      listener(this.error);
      return () => {};
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Marks the lease lost (`other`: who holds it now; undefined: nobody). */
  lost(other: LockHolder | null | undefined): LockCompromisedError {
    if (!this.error) {
      this.error = new LockCompromisedError(
        other === undefined
          ? `The lease of heartbeat "${this.id}" was removed while this process held it; this process stopped writing.`
          : `The lease of heartbeat "${this.id}" was taken over by ${describeHolder(other)}; this process stopped writing.`,
        this.where,
        {
          hint: "Another process may be running this heartbeat: check it before resuming. Nothing more was written by this one.",
        },
      );
      clearInterval(this.timer);
      for (const listener of this.listeners) listener(this.error);
      this.listeners.clear();
    }
    return this.error;
  }

  /** Extends the lease; marks it compromised when it is no longer ours. */
  async refresh(): Promise<void> {
    if (this.error || this.released) return;
    const { rowCount } = await this.db.query(
      `UPDATE ravenclaws.leases SET expires_at = now() + $3 * interval '1 millisecond'
        WHERE heartbeat_id = $1 AND token = $2`,
      [this.id, this.token, this.ttlMs],
    );
    if (rowCount === 0 && !this.released) await this.check();
  }

  private async check(): Promise<void> {
    if (this.error) throw this.error;
    const { rows } = await this.db.query<{ owner: unknown; token: string }>(
      "SELECT owner, token FROM ravenclaws.leases WHERE heartbeat_id = $1",
      [this.id],
    );
    if (this.released) return;
    const row = rows[0];
    if (!row) throw this.lost(undefined);
    if (row.token !== this.token) throw this.lost(holderOf(row.owner));
  }

  verify(): Promise<void> {
    return this.check();
  }

  async release(): Promise<void> {
    this.released = true;
    clearInterval(this.timer);
    this.listeners.clear();
    await this.db
      .query("DELETE FROM ravenclaws.leases WHERE heartbeat_id = $1 AND token = $2", [
        this.id,
        this.token,
      ])
      .catch(() => {});
  }
}

/**
 * The heartbeats of the (migrated) database `db`, each a
 * {@link PgHeartbeatStore}. With `schedule`, commits queue the next tick's
 * job (what workers and hosts over the database want).
 */
export function pgStoreBackend(db: Database, options: PgStoreOptions = {}): PgStoreBackend {
  const redact: Redactor = options.redact
    ? (text) => options.redact?.(db.redact(text)) ?? text
    : db.redact;
  const storeOptions = { redact, schedule: options.schedule ?? false };
  return {
    db,
    heartbeat: (id) => new PgHeartbeatStore(db, id, storeOptions),
    async list() {
      const { rows } = await db.query<{ id: string }>(
        'SELECT id FROM ravenclaws.heartbeats ORDER BY id COLLATE "C"',
      );
      return rows.map((r) => r.id);
    },
    async create(id, create) {
      const settings = JSON.parse(redact(JSON.stringify(create.settings ?? {}))) as SavedSettings;
      return db.transaction(async (tx) => {
        const { rowCount } = await tx.query(
          `INSERT INTO ravenclaws.heartbeats (id, goal, workdir, settings, next_tick_at)
           VALUES ($1, $2, $3, $4::jsonb, COALESCE($5, now()))
           ON CONFLICT (id) DO NOTHING`,
          [
            id,
            redact(create.goal),
            create.workdir,
            JSON.stringify(settings),
            create.firstTickAt ?? null,
          ],
        );
        if (rowCount === 0) return false;
        if (storeOptions.schedule) {
          const { rows } = await tx.query<{ at: Date }>(
            "SELECT next_tick_at AS at FROM ravenclaws.heartbeats WHERE id = $1",
            [id],
          );
          await scheduleTick(tx, id, rows[0]?.at ?? new Date());
        }
        return true;
      });
    },
    async summaries() {
      const { rows } = await db.query<{
        id: string;
        goal: string;
        workdir: string;
        settings: SavedSettings;
        status: string;
        tick: number;
        seq: number;
        next_tick_at: Date | null;
        stopped_at: Date | null;
        wake_requested_at: Date | null;
        created_at: Date;
        updated_at: Date;
        owner: unknown;
      }>(
        `SELECT h.id, h.goal, h.workdir, h.settings, h.status, h.tick, h.seq, h.next_tick_at,
                h.stopped_at, h.wake_requested_at, h.created_at, h.updated_at,
                CASE WHEN l.expires_at > now() THEN l.owner END AS owner
           FROM ravenclaws.heartbeats h
           LEFT JOIN ravenclaws.leases l ON l.heartbeat_id = h.id
          ORDER BY h.id COLLATE "C"`,
      );
      return rows.map((r) => {
        const holder = holderOf(r.owner);
        const jobId = (r.owner as { jobId?: unknown } | null)?.jobId;
        return {
          id: r.id,
          goal: r.goal,
          workdir: r.workdir,
          settings: r.settings,
          status: r.status,
          tick: r.tick,
          seq: r.seq,
          nextTickAt: iso(r.next_tick_at),
          stoppedAt: iso(r.stopped_at),
          wakeRequestedAt: iso(r.wake_requested_at),
          createdAt: iso(r.created_at) ?? "",
          updatedAt: iso(r.updated_at) ?? "",
          holder: holder ? { ...holder, jobId: typeof jobId === "string" ? jobId : null } : null,
        };
      });
    },
  };
}
