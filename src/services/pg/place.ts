/**
 * The heartbeats of a database as the read and control commands see them
 * (a {@link HeartbeatPlace}): the `heartbeats` rows with their lease, the
 * journal rows, the decisions table. Imported only when a command is given
 * `--database-url` (or `RAVENCLAWS_DATABASE_URL`), so the file mode never
 * loads `pg`.
 */
import * as os from "node:os";
import { StateFileError, UsageError } from "../../errors.js";
import type { StateFile } from "../../schemas/stateFile.js";
import type { HeartbeatView, ProcessInfo } from "../heartbeats.js";
import type { HeartbeatPlace } from "../places.js";
import { checkStateFile, parseStateFile } from "../store/index.js";
import { pgHeartbeatPaths } from "../store/pgStore.js";
import type { Database } from "./db.js";
import { pgDecisions } from "./decisions.js";

/** The row {@link viewOf} reads: a heartbeat with its lease. */
interface HeartbeatRow {
  id: string;
  goal: string;
  state: unknown;
  stopped_at: Date | null;
  created_at: Date;
  owner: { pid?: unknown; host?: unknown; since?: unknown } | null;
  live: boolean | null;
  /** The overview's partial snapshot ({@link SELECT_OVERVIEW}): taken as it is, not parsed. */
  light?: boolean;
}

const SELECT_VIEWS = `
  SELECT h.id, h.goal, h.state, h.stopped_at, h.created_at, l.owner,
         (l.expires_at > now()) AS live
    FROM ravenclaws.heartbeats h
    LEFT JOIN ravenclaws.leases l ON l.heartbeat_id = h.id`;

/**
 * The overview of every heartbeat (`status`): the snapshot's top-level fields
 * and only the parts of the XState snapshot `status` reads (state, max ticks,
 * the tool loop while calls wait), so 10,000 heartbeats do not travel whole.
 * Rows written by the store were validated when written; `light` marks them.
 */
const SELECT_OVERVIEW = `
  SELECT h.id, h.goal, h.stopped_at, h.created_at, l.owner,
         (l.expires_at > now()) AS live, true AS light,
         CASE WHEN h.state IS NULL THEN NULL ELSE
           (h.state - 'snapshot') || jsonb_build_object('snapshot', jsonb_build_object(
             'status', h.state #> '{snapshot,status}',
             'value', h.state #> '{snapshot,value}',
             'context', jsonb_build_object(
               'id', h.state #> '{snapshot,context,id}',
               'goal', h.state #> '{snapshot,context,goal}',
               'tick', h.state #> '{snapshot,context,tick}',
               'parked', h.state #> '{snapshot,context,parked}',
               'settings', jsonb_build_object(
                 'maxTicks', h.state #> '{snapshot,context,settings,maxTicks}')),
             'children', CASE WHEN h.pending_calls > 0
                              THEN h.state #> '{snapshot,children}' ELSE '{}'::jsonb END))
         END AS state
    FROM ravenclaws.heartbeats h
    LEFT JOIN ravenclaws.leases l ON l.heartbeat_id = h.id`;

/** The worker running it: the live lease's holder. */
function processOf(row: HeartbeatRow): ProcessInfo {
  const owner = row.owner;
  if (!row.live || !owner) return { running: false };
  const host = typeof owner.host === "string" ? owner.host : "?";
  return {
    running: true,
    pid: typeof owner.pid === "number" ? owner.pid : 0,
    host,
    since: typeof owner.since === "string" ? owner.since : "",
    local: host === os.hostname(),
    // Reached through the database, never by a signal.
    hosted: true,
  };
}

/** A row as the commands' view; a snapshot that cannot be used is a {@link StateFileError}. */
function viewOf(where: string, row: HeartbeatRow): HeartbeatView {
  const paths = pgHeartbeatPaths(where, row.id);
  let file: StateFile | null = null;
  if (row.state !== null && row.state !== undefined && row.light) {
    file = row.state as StateFile;
  } else if (row.state !== null && row.state !== undefined) {
    file = parseStateFile(JSON.stringify(row.state), paths.stateFile);
    checkStateFile(file, paths.stateFile);
  }
  return {
    id: row.id,
    paths,
    file,
    process: processOf(row),
    database: {
      stoppedAt: row.stopped_at ? row.stopped_at.toISOString() : null,
      goal: row.goal,
      createdAt: row.created_at.toISOString(),
    },
  };
}

/**
 * The heartbeats of `db` (already opened; closed by `close()`). `where` is
 * the URL as messages show it (no password).
 */
export function databasePlace(db: Database): HeartbeatPlace {
  const where = db.url;
  const unknown = async (id: string): Promise<never> => {
    const { rows } = await db.query<{ id: string }>(
      "SELECT id FROM ravenclaws.heartbeats ORDER BY id LIMIT 21",
    );
    const known = rows.map((r) => r.id);
    const shown = known.slice(0, 20).join(", ") + (known.length > 20 ? ", …" : "");
    throw new UsageError(`There is no heartbeat "${id}" in the database ${where}.`, {
      option: "<id>",
      code: "unknown-id",
      hint:
        known.length > 0
          ? `Known ids there: ${shown}.`
          : "There are no heartbeats in that database at all; check --database-url.",
    });
  };
  const place: HeartbeatPlace = {
    kind: "database",
    where,
    async loadAll() {
      const { rows } = await db.query<HeartbeatRow>(SELECT_OVERVIEW);
      const views: HeartbeatView[] = [];
      const problems: Array<{ id: string; error: StateFileError }> = [];
      for (const row of rows) {
        try {
          views.push(viewOf(where, row));
        } catch (error) {
          if (error instanceof StateFileError) problems.push({ id: row.id, error });
          else throw error;
        }
      }
      const updated = (v: HeartbeatView) => v.file?.updatedAt ?? "\uffff";
      views.sort((a, b) => updated(b).localeCompare(updated(a)) || a.id.localeCompare(b.id));
      problems.sort((a, b) => a.id.localeCompare(b.id));
      return { views, problems };
    },
    async views() {
      // What approvals reads: only heartbeats whose snapshot says calls wait (the
      // generated column counts a waiting tool loop; a stop parks it in the context).
      const { rows } = await db.query<HeartbeatRow>(
        `${SELECT_VIEWS} WHERE h.pending_calls > 0
            OR jsonb_typeof(h.state #> '{snapshot,context,parked}') = 'object'`,
      );
      return rows.flatMap((row) => {
        try {
          return [viewOf(where, row)];
        } catch (error) {
          if (error instanceof StateFileError) return [];
          throw error;
        }
      });
    },
    async view(id) {
      const { rows } = await db.query<HeartbeatRow>(`${SELECT_VIEWS} WHERE h.id = $1`, [id]);
      const row = rows[0];
      if (!row) return unknown(id);
      return viewOf(where, row);
    },
    async require(id) {
      const { rows } = await db.query("SELECT 1 FROM ravenclaws.heartbeats WHERE id = $1", [id]);
      if (rows.length === 0) return unknown(id);
      return pgHeartbeatPaths(where, id);
    },
    async journalLines(id, cursor) {
      const { rows } = await db.query<{ id: string; entry: unknown }>(
        "SELECT id, entry FROM ravenclaws.journal WHERE heartbeat_id = $1 AND id > $2 ORDER BY id",
        [id, cursor],
      );
      const last = rows.at(-1);
      return {
        lines: rows.map((r) => JSON.stringify(r.entry)),
        cursor: last ? Number(last.id) : cursor,
      };
    },
    async lastRunRecord(id) {
      const { rows } = await db.query<{ entry: Record<string, unknown> }>(
        "SELECT entry FROM ravenclaws.journal WHERE heartbeat_id = $1 AND type = 'run' ORDER BY id DESC LIMIT 1",
        [id],
      );
      return rows[0]?.entry;
    },
    decisions: pgDecisions(db),
    control: {
      wake: async (id) => {
        const { wakeHeartbeat } = await import("./queue.js");
        await wakeHeartbeat(db, id);
      },
      stop: async (id) => {
        const { stopHeartbeat } = await import("./queue.js");
        await stopHeartbeat(db, id);
      },
      start: async (id) => {
        const { startHeartbeat } = await import("./queue.js");
        await startHeartbeat(db, id);
      },
    },
    close: () => db.close(),
  };
  return place;
}
