/**
 * `ravenclaws approvals [--json]`: every tool call in the state dir that
 * waits for the operator (a heartbeat's tool loop in `awaitingApproval`),
 * whether or not its heartbeat's process runs, with any decision already
 * stored for it.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { RunEnvironment } from "./run.js";
import { type LocationArgs, locationOptions, withPlace } from "./status.js";

/** Options of `approvals`. */
export interface ApprovalsArgs extends LocationArgs {
  json?: boolean;
}

/** `approvals`' yargs module, bound to the process it runs in. */
export function approvalsCommand(environment: () => RunEnvironment) {
  return {
    command: "approvals",
    describe: "List the tool calls waiting for approval (ask rules)",
    builder: (yargs: Argv) =>
      locationOptions(yargs)
        .option("json", { type: "boolean", describe: "Print a JSON array, for scripts" })
        .example("$0 approvals", "what waits, and the command that decides it")
        .example("$0 approvals --json | jq '.[0].callId'", "as JSON")
        .example("$0 approvals --database-url postgres://host/db", "what waits in a database"),
    handler: async (argv: ArgumentsCamelCase<ApprovalsArgs>) => {
      const io = environment();
      const [{ listPendingApprovals }, hb] = await Promise.all([
        import("../services/approvals.js"),
        import("../services/heartbeats.js"),
      ]);
      const { pending, where } = await withPlace(argv, io, async (place) => ({
        pending: await listPendingApprovals(place),
        where: place.kind === "database" ? `the database ${place.where}` : place.where,
      }));
      if (argv.json) {
        io.stdout.write(`${JSON.stringify(pending, null, 2)}\n`);
        return;
      }
      if (pending.length === 0) {
        io.stdout.write(`No tool call is waiting for approval in ${where}.\n`);
        return;
      }
      const now = Date.now();
      const lines: string[] = [];
      for (const p of pending) {
        const decided = p.decision
          ? `   decided: ${p.decision.decision} by ${p.decision.by.user} (pid ${p.decision.by.pid}); applied when the heartbeat resumes or polls`
          : `   decide: ravenclaws approve ${p.id} --call ${p.callId}   |   ravenclaws deny ${p.id} --call ${p.callId} --reason "…"`;
        lines.push(
          `${p.id}  tick ${p.tick}  call ${p.callId}  waiting ${hb.formatDuration(now - Date.parse(p.since))}`,
          `   ${p.tool} wants to ${hb.clip(p.what, 160)} (ask rule "${p.rule}")`,
          `   arguments: ${hb.clip(p.arguments.replace(/\s+/g, " "), 200)}`,
          decided,
        );
      }
      io.stdout.write(`${lines.join("\n")}\n`);
    },
  };
}
