/**
 * The operator's decisions in the database (`ravenclaws.decisions`, one row
 * per waiting call): what `approve`/`deny` and serve's API store from any
 * machine, and what the approvals wait of a heartbeat running on a worker
 * reads. Like the decision files, the table is an inbox: the wait journals a
 * decision, then removes its row.
 */
import type { DecisionInbox, StoredDecision } from "../approvals.js";
import type { Database } from "./db.js";

interface DecisionRow {
  heartbeat_id: string;
  call_id: string;
  attempt: string;
  iteration: number;
  decision: string;
  reason: string | null;
  decider: { user?: unknown; pid?: unknown } | null;
  decided_at: Date;
}

const toStored = (row: DecisionRow): StoredDecision => ({
  schemaVersion: 1,
  id: row.heartbeat_id,
  attempt: row.attempt,
  iteration: row.iteration,
  callId: row.call_id,
  decision: row.decision === "approve" ? "approve" : "deny",
  reason: row.reason,
  by: {
    user: typeof row.decider?.user === "string" ? row.decider.user : "?",
    pid: typeof row.decider?.pid === "number" ? row.decider.pid : 0,
  },
  at: row.decided_at.toISOString(),
});

/**
 * The decisions table as a {@link DecisionInbox}. Call ids repeat across
 * ticks, so a row carries its round (`attempt`, `iteration`): a row left by an
 * older round is replaced by a new decision for the same call id, and a
 * removal deletes only the round it names.
 */
export function pgDecisions(db: Pick<Database, "query">): DecisionInbox {
  return {
    async read(id) {
      const { rows } = await db.query<DecisionRow>(
        "SELECT * FROM ravenclaws.decisions WHERE heartbeat_id = $1 ORDER BY decided_at, call_id",
        [id],
      );
      return rows.map(toStored);
    },
    async remove(id, key) {
      await db.query(
        "DELETE FROM ravenclaws.decisions WHERE heartbeat_id = $1 AND call_id = $2 AND attempt = $3 AND iteration = $4",
        [id, key.callId, key.attempt, key.iteration],
      );
    },
    async write(decisions) {
      const stored: StoredDecision[] = [];
      for (const d of decisions) {
        // One statement per call: a decision of this round already there stands.
        const { rows } = await db.query<DecisionRow>(
          `INSERT INTO ravenclaws.decisions
             (heartbeat_id, call_id, attempt, iteration, decision, reason, decider, decided_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (heartbeat_id, call_id) DO UPDATE SET
             attempt = EXCLUDED.attempt, iteration = EXCLUDED.iteration,
             decision = EXCLUDED.decision, reason = EXCLUDED.reason,
             decider = EXCLUDED.decider, decided_at = EXCLUDED.decided_at
           WHERE (ravenclaws.decisions.attempt, ravenclaws.decisions.iteration)
                 IS DISTINCT FROM (EXCLUDED.attempt, EXCLUDED.iteration)
           RETURNING *`,
          [
            d.id,
            d.callId,
            d.attempt,
            d.iteration,
            d.decision,
            d.reason,
            JSON.stringify(d.by),
            d.at,
          ],
        );
        const row = rows[0];
        if (row) stored.push(toStored(row));
      }
      return stored;
    },
  };
}
