/**
 * The host of `serve --database-url`: the API's {@link ServedHost} over the
 * PostgreSQL store. Nothing is kept in memory but what the event stream
 * needs: the overview is one query (`summaries()`), a detail one row, the
 * journal a range of rows; control goes through the tick queue
 * (`services/pg/queue.ts`) and decisions through the decisions table, so
 * whichever worker runs a heartbeat's next tick (this process with ticks on,
 * or `ravenclaws worker` on another machine) acts on them.
 *
 * Live events come from polling the database (see {@link DbEventPoller}):
 * new journal rows (by id) and heartbeat rows changed since the last poll
 * (by `updated_at`), so a tick committed by any process shows on the page.
 */
import { CommandFailedError, UsageError } from "../errors.js";
import type { StateFile } from "../schemas/stateFile.js";
import type {
  ControlResult,
  CreateHeartbeatRequest,
  HeartbeatDetail,
  HeartbeatSummary,
  HostEvent,
  HostedStatus,
  HostStats,
  JournalPage,
  JournalQuery,
  ServedHost,
} from "./types.js";

/** What the host needs of the database: `services/pg/db.ts`'s `Executor`. */
export interface DbQuery {
  // biome-ignore lint/suspicious/noExplicitAny: rows are typed where they are read.
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

/** Milliseconds between two polls of the database for the event stream. */
export const DB_POLL_MS = 250;
/**
 * At most this many new journal rows per poll: a burst (a migration of many
 * heartbeats) is streamed over several polls rather than read at once.
 */
export const DB_POLL_BATCH = 1_000;
/**
 * How far back each poll looks again (ms of `updated_at`, and journal rows
 * seen less than this long ago). A row's `updated_at` and a journal row's
 * id are taken inside its transaction but become visible at its commit,
 * possibly after a later one; re-reading this window (deduplicated) catches
 * them. A transaction open longer than this can be missed by the stream (the
 * next list or detail request still shows it).
 */
export const DB_POLL_OVERLAP_MS = 3_000;

/**
 * The overview's columns of `ravenclaws.heartbeats` (plus its lease), one row
 * per heartbeat. The snapshot's fields are the generated columns of migration
 * 2 (`usage`, `reason`, `state_value`, `last_outcome`, `pending_calls`), never
 * paths of `state`: reading those detoasts the whole snapshot once per path.
 */
const SUMMARY_SELECT = `
  SELECT h.id, h.goal, h.status, h.tick, h.next_tick_at, h.stopped_at, h.updated_at, h.workdir,
         h.state IS NULL AS unsaved, h.state_value AS value, h.usage, h.reason,
         h.last_outcome, h.pending_calls AS pending,
         (l.expires_at IS NOT NULL AND l.expires_at > now()) AS leased
    FROM ravenclaws.heartbeats h
    LEFT JOIN ravenclaws.leases l ON l.heartbeat_id = h.id`;

interface SummaryRow {
  id: string;
  goal: string | null;
  status: string | null;
  tick: number | null;
  next_tick_at: Date | null;
  stopped_at: Date | null;
  updated_at: Date | null;
  workdir: string;
  unsaved: boolean;
  value: unknown;
  usage: HeartbeatSummary["usage"] | null;
  reason: string | null;
  last_outcome: string | null;
  pending: number;
  leased: boolean;
}

/** Statuses that are also the machine's state once the persist is done. */
const RESTING = new Set(["sleeping", "completed", "failed", "shutdown"]);

const clip = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max)}…`);
const iso = (d: Date | null) => (d ? d.toISOString() : null);
const ZERO_USAGE = { promptTokens: 0, completionTokens: 0, totalTokens: 0, calls: 0 };

/** What the overview shows for one row: the stored status, the stop, the lease and the due time together. */
export function hostedStatusOf(row: SummaryRow, now: number): HostedStatus {
  if (row.status === "completed" || row.status === "failed") return row.status;
  if (row.stopped_at) return "stopped";
  if (row.leased) return "ticking";
  if (row.unsaved) return "queued";
  if (row.status === "shutdown" || row.status === "executing") return "queued";
  if (row.next_tick_at && row.next_tick_at.getTime() <= now) return "queued";
  return "sleeping";
}

/** One overview row of the database as the host's summary. */
export function summaryOfRow(row: SummaryRow, now: number): HeartbeatSummary {
  // Every stored snapshot was taken in `persisting`; between ticks the machine is where the status says.
  const value =
    row.value === "persisting" && row.status && RESTING.has(row.status)
      ? row.status
      : (row.value ?? "idle");
  return {
    id: row.id,
    goal: clip(row.goal ?? "", 200),
    status: hostedStatusOf(row, now),
    state: typeof value === "string" ? value : JSON.stringify(value),
    tick: row.tick ?? 0,
    nextTickAt: iso(row.next_tick_at),
    usage: row.usage ?? { ...ZERO_USAGE },
    lastOutcome: row.last_outcome,
    reason:
      row.stopped_at && row.status !== "completed" && row.status !== "failed"
        ? "stopped"
        : row.reason,
    pendingApprovals: row.pending ?? 0,
    workdir: row.workdir,
    updatedAt: iso(row.updated_at),
    problem: null,
  };
}

/** How the database host acts on heartbeats: the shared modules, bound to the database by `serve`. */
export interface DbHostDeps {
  /** Makes a heartbeat in the database (row, first snapshot, first tick job); resolves with its id. */
  create(request: CreateHeartbeatRequest): Promise<string>;
  /** `queue.ts`'s `wakeHeartbeat`. */
  wake(id: string): Promise<unknown>;
  /** `queue.ts`'s `stopHeartbeat`. */
  stop(id: string): Promise<unknown>;
  /** `queue.ts`'s `startHeartbeat`. */
  start(id: string): Promise<unknown>;
}

/** What the host uses of a worker running in this process (`RunningWorker`). */
export interface InProcessTicks {
  stop(): Promise<void>;
  on?(listener: (event: { type: string; id?: string; state?: string }) => void): () => void;
}

/** Options of {@link createDbHost}. */
export interface DbHostOptions {
  db: DbQuery;
  /** The database as shown in messages and paths (its password redacted). */
  where: string;
  /**
   * Ticks run in this process (`startWorker`), stopped by {@link ServedHost.close};
   * null with `--no-ticks`. Its `state` events show the phase of the ticks it
   * runs (the database holds only committed snapshots).
   */
  ticks?: InProcessTicks | null;
  /** Milliseconds between polls for events (default {@link DB_POLL_MS}). */
  pollMs?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
}

/** Opens the database host: reads the overview once and starts polling for events. */
export async function createDbHost(options: DbHostOptions, deps: DbHostDeps): Promise<DbHost> {
  const host = new DbHost(options, deps);
  await host.open();
  return host;
}

interface Known {
  /** The summary as last polled. */
  summary: HeartbeatSummary;
  /** Its JSON, to tell a change. */
  sig: string;
}

/** The database's heartbeats as the API serves them. */
export class DbHost implements ServedHost {
  private readonly listeners = new Set<(event: HostEvent) => void>();
  private readonly known = new Map<string, Known>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | null = null;
  private closed = false;
  /** Journal rows are read again above this id (see {@link DB_POLL_OVERLAP_MS}). */
  private journalFloor = "0";
  /** The highest journal id seen. */
  private journalTop = "0";
  /** Journal ids seen above the floor. */
  private readonly seenJournal = new Set<string>();
  /** The highest journal id seen by each recent poll, to move the floor up once it is old enough. */
  private readonly marks: Array<{ at: number; max: string }> = [];
  /** Heartbeat rows changed at or after this database time are read again. */
  private rowsSince: Date = new Date(0);
  /** The machine state of each tick this process runs now (JSON text for nested states). */
  private readonly live = new Map<string, string>();
  private unlisten: () => void = () => {};

  constructor(
    private readonly options: DbHostOptions,
    private readonly deps: DbHostDeps,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Reads where the journal and the rows are now, so the stream starts from here. */
  async open(): Promise<void> {
    const { rows } = await this.options.db.query(
      "SELECT now() AS now, coalesce((SELECT max(id) FROM ravenclaws.journal), 0)::text AS max",
    );
    const first = rows[0] as { now: Date; max: string };
    this.journalFloor = first.max;
    this.journalTop = first.max;
    this.rowsSince = new Date(first.now.getTime() - DB_POLL_OVERLAP_MS);
    for (const summary of await this.list()) {
      this.known.set(summary.id, { summary, sig: JSON.stringify(summary) });
    }
    this.timer = setInterval(() => void this.poll(), this.options.pollMs ?? DB_POLL_MS);
    this.timer.unref();
    this.unlisten = this.options.ticks?.on?.((event) => this.onTickEvent(event)) ?? (() => {});
  }

  /** A tick of this process entered a state: shown at once (the database sees only its commits). */
  private onTickEvent(event: { type: string; id?: string; state?: string }): void {
    if (!event.id) return;
    if (event.type === "job") {
      this.live.delete(event.id);
      return;
    }
    if (event.type !== "state" || typeof event.state !== "string") return;
    this.live.set(event.id, event.state);
    const known = this.known.get(event.id);
    if (!known) return;
    const summary = this.withLive({ ...known.summary });
    this.emit({ type: "state", at: this.iso(), id: event.id, summary });
  }

  /** A summary with the live state of a tick this process runs, if any. */
  private withLive(summary: HeartbeatSummary): HeartbeatSummary {
    const state = this.live.get(summary.id);
    if (state === undefined || summary.status === "stopped") return summary;
    summary.state = state;
    if (summary.status !== "completed" && summary.status !== "failed") summary.status = "ticking";
    return summary;
  }

  // ---- reading ------------------------------------------------------------

  async list(): Promise<HeartbeatSummary[]> {
    const { rows } = await this.options.db.query(`${SUMMARY_SELECT} ORDER BY h.id COLLATE "C"`);
    const now = this.now();
    return (rows as SummaryRow[]).map((row) => this.withLive(summaryOfRow(row, now)));
  }

  async has(id: string): Promise<boolean> {
    const { rows } = await this.options.db.query(
      "SELECT 1 FROM ravenclaws.heartbeats WHERE id = $1",
      [id],
    );
    return rows.length > 0;
  }

  /** One heartbeat's overview row (one query), or null when unknown. */
  async summary(id: string): Promise<HeartbeatSummary | null> {
    const { rows } = await this.options.db.query(`${SUMMARY_SELECT} WHERE h.id = $1`, [id]);
    const row = rows[0] as SummaryRow | undefined;
    return row ? this.withLive(summaryOfRow(row, this.now())) : null;
  }

  async get(id: string): Promise<HeartbeatDetail | null> {
    const { rows } = await this.options.db.query(
      `SELECT s.*, h.state AS file, h.goal AS goal_text, h.created_at, h.settings
         FROM (${SUMMARY_SELECT} WHERE h.id = $1) s
         JOIN ravenclaws.heartbeats h ON h.id = s.id`,
      [id],
    );
    const row = rows[0] as
      | (SummaryRow & {
          file: StateFile | null;
          goal_text: string | null;
          created_at: Date | null;
          settings: Record<string, unknown> | null;
        })
      | undefined;
    if (!row) return null;
    const file = row.file;
    const where = `${this.options.where} heartbeat ${id}`;
    return {
      ...this.withLive(summaryOfRow(row, this.now())),
      goalText: file?.goal ?? row.goal_text ?? "",
      createdAt: file?.createdAt ?? iso(row.created_at),
      progress: file?.progress ?? "",
      lastAssessment: file?.lastAssessment ?? null,
      lastPlan: file?.lastPlan ?? null,
      lastResult: file?.lastResult ?? null,
      settings: (file?.settings ?? row.settings ?? {}) as HeartbeatDetail["settings"],
      stateFile: `${where} (ravenclaws.heartbeats)`,
      journal: `${where} (ravenclaws.journal)`,
      error: file?.error ? { code: file.error.code, message: file.error.message } : null,
    };
  }

  async journal(id: string, query: JournalQuery): Promise<JournalPage> {
    const types = query.types?.length ? query.types : null;
    const { rows } = await this.options.db.query(
      `SELECT entry FROM ravenclaws.journal
        WHERE heartbeat_id = $1 AND ($2::text[] IS NULL OR type = ANY($2::text[]))
        ORDER BY id DESC LIMIT $3`,
      [id, types, query.limit + 1],
    );
    const entries = (rows as Array<{ entry: { type: string } }>).map((r) => r.entry);
    const truncated = entries.length > query.limit;
    return { entries: entries.slice(0, query.limit).reverse(), truncated };
  }

  stats(): HostStats {
    let queued = 0;
    let running = 0;
    for (const { summary } of this.known.values()) {
      if (summary.status === "queued") queued++;
      if (summary.status === "ticking") running++;
    }
    return { hosted: this.known.size, live: running, queued, running };
  }

  // ---- changing -------------------------------------------------------------

  async create(request: CreateHeartbeatRequest): Promise<HeartbeatSummary> {
    this.checkOpen();
    const id = await this.deps.create(request);
    const summary = await this.summary(id);
    if (!summary) throw new Error(`The heartbeat ${id} was created but is not in the database.`);
    if (!this.known.has(id)) {
      this.known.set(id, { summary, sig: JSON.stringify(summary) });
      this.emit({ type: "heartbeat.added", at: this.iso(), id, summary: { ...summary } });
    }
    return summary;
  }

  async wake(id: string): Promise<ControlResult> {
    const before = await this.require(id);
    if (
      before.status === "completed" ||
      before.status === "failed" ||
      before.status === "stopped"
    ) {
      return {
        message: `Heartbeat ${id} is ${before.status}: there is nothing to wake.`,
        summary: before,
      };
    }
    await this.deps.wake(id);
    return this.result(id, `Woke heartbeat ${id}: its next tick starts now.`);
  }

  async stop(id: string): Promise<ControlResult> {
    const before = await this.require(id);
    if (before.status === "stopped")
      return { message: `Heartbeat ${id} is already stopped.`, summary: before };
    if (before.status === "completed" || before.status === "failed") {
      return { message: `Heartbeat ${id} has ended (${before.status}).`, summary: before };
    }
    await this.deps.stop(id);
    return this.result(id, `Heartbeat ${id} stopped; it stays stopped until started again.`);
  }

  async start(id: string): Promise<ControlResult> {
    const before = await this.require(id);
    if (before.status !== "stopped") {
      return { message: `Heartbeat ${id} is not stopped (${before.status}).`, summary: before };
    }
    await this.deps.start(id);
    return this.result(id, `Heartbeat ${id} started: it ticks when due.`);
  }

  subscribe(listener: (event: HostEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.unlisten();
    await this.polling;
    await this.options.ticks?.stop();
    this.listeners.clear();
  }

  // ---- events -------------------------------------------------------------

  /** One poll at a time; a slow database delays the next rather than piling them up. */
  poll(): Promise<void> {
    if (this.polling || this.closed) return this.polling ?? Promise.resolve();
    this.polling = this.pollOnce()
      .catch(() => {
        // The database is unreachable for a moment: the next poll tries again.
      })
      .finally(() => {
        this.polling = null;
      });
    return this.polling;
  }

  private async pollOnce(): Promise<void> {
    const db = this.options.db;
    const startedAt = this.now();
    // The journal first: rows read after it are at least as new as the entries. The
    // window's ids (to find late commits) and at most a batch of newer ones, in id
    // order (ORDER BY the column, not the text alias).
    const ids = await db.query(
      `(SELECT id::text AS id FROM ravenclaws.journal WHERE id > $1::bigint AND id <= $2::bigint)
       UNION ALL
       (SELECT j.id::text AS id FROM ravenclaws.journal j WHERE j.id > $2::bigint ORDER BY j.id LIMIT $3)`,
      [this.journalFloor, this.journalTop, DB_POLL_BATCH],
    );
    const fresh = (ids.rows as Array<{ id: string }>)
      .map((r) => r.id)
      .filter((id) => !this.seenJournal.has(id));
    const entries = fresh.length
      ? ((
          await db.query(
            "SELECT id::text AS id, heartbeat_id, entry FROM ravenclaws.journal WHERE id = ANY($1::bigint[]) ORDER BY id",
            [fresh],
          )
        ).rows as Array<{ id: string; heartbeat_id: string; entry: Record<string, unknown> }>)
      : [];
    const changed = await db.query(
      `SELECT now() AS db_now, s.* FROM (${SUMMARY_SELECT}
         WHERE h.updated_at >= $1 OR l.heartbeat_id IS NOT NULL) s`,
      [this.rowsSince],
    );
    const rows = changed.rows as Array<SummaryRow & { db_now: Date }>;

    // Move the windows on.
    for (const id of ids.rows as Array<{ id: string }>) {
      this.seenJournal.add(id.id);
      if (BigInt(id.id) > BigInt(this.journalTop)) this.journalTop = id.id;
    }
    this.marks.push({ at: startedAt, max: this.journalTop });
    while (
      this.marks.length > 0 &&
      (this.marks[0] as { at: number }).at < startedAt - DB_POLL_OVERLAP_MS
    ) {
      this.journalFloor = (this.marks.shift() as { max: string }).max;
    }
    for (const id of this.seenJournal)
      if (BigInt(id) <= BigInt(this.journalFloor)) this.seenJournal.delete(id);
    const dbNow = rows[0]?.db_now ?? (await db.query("SELECT now() AS now")).rows[0]?.now;
    if (dbNow) this.rowsSince = new Date((dbNow as Date).getTime() - DB_POLL_OVERLAP_MS);

    // Tool and approval events, and the tick lines by heartbeat.
    const ticks = new Map<string, Record<string, unknown>[]>();
    for (const { heartbeat_id: id, entry } of entries) {
      const at = typeof entry.at === "string" ? entry.at : this.iso();
      const tick = typeof entry.tick === "number" ? entry.tick : 0;
      if (entry.type === "tool") {
        this.emit({
          type: "tool",
          at,
          id,
          tick,
          call: {
            callId: String(entry.callId ?? ""),
            name: String(entry.name ?? ""),
            status: String(entry.status ?? ""),
          },
        });
      } else if (entry.type === "approval-needed" && Array.isArray(entry.calls)) {
        for (const call of entry.calls as Array<{ callId?: unknown }>) {
          this.emit({
            type: "approval",
            at,
            id,
            callId: String(call.callId ?? ""),
            decision: "pending",
          });
        }
      } else if (entry.type === "approval") {
        this.emit({
          type: "approval",
          at,
          id,
          callId: String(entry.callId ?? ""),
          decision: entry.decision === "approve" ? "approve" : "deny",
        });
      }
      if (entry.type === "tick" || entry.type === "end") {
        const list = ticks.get(id) ?? [];
        list.push(entry);
        ticks.set(id, list);
      }
    }

    // Rows: added, a new state, or otherwise changed; each tick line with the row after it.
    const now = this.now();
    for (const row of rows) {
      const summary = this.withLive(summaryOfRow(row, now));
      const sig = JSON.stringify(summary);
      const before = this.known.get(row.id);
      const tickLines = ticks.get(row.id);
      ticks.delete(row.id);
      if (before?.sig === sig && !tickLines) continue;
      this.known.set(row.id, { summary, sig });
      if (!before) {
        this.emit({ type: "heartbeat.added", at: this.iso(), id: row.id, summary: { ...summary } });
        continue;
      }
      if (before.summary.status !== summary.status || before.summary.state !== summary.state) {
        this.emit({ type: "state", at: this.iso(), id: row.id, summary: { ...summary } });
      }
      if (tickLines || before.sig !== sig) {
        this.emit({
          type: "tick",
          at: this.iso(),
          id: row.id,
          summary: { ...summary },
          entries: tickLines ?? [],
        });
      }
    }
    // Tick lines whose row changed in an earlier poll (read before its journal rows).
    for (const [id, tickLines] of ticks) {
      const known = this.known.get(id);
      if (!known) continue;
      this.emit({
        type: "tick",
        at: this.iso(),
        id,
        summary: { ...known.summary },
        entries: tickLines,
      });
    }
  }

  // ---- helpers --------------------------------------------------------------

  private async require(id: string): Promise<HeartbeatSummary> {
    const summary = await this.summary(id);
    if (!summary) {
      throw new CommandFailedError(
        "not-found",
        `No heartbeat "${id}" is in ${this.options.where}.`,
        {
          hint: "List them with GET /api/heartbeats or `ravenclaws status --database-url …`.",
        },
      );
    }
    return summary;
  }

  private async result(id: string, message: string): Promise<ControlResult> {
    const summary = (await this.summary(id)) as HeartbeatSummary;
    return { message, summary };
  }

  private checkOpen(): void {
    if (this.closed) throw new UsageError("The host is closing.", { code: "host-closed" });
  }

  private emit(event: HostEvent): void {
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
