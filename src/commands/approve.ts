/**
 * `ravenclaws approve <id> [--call <callId>]`: approves a tool call (or all
 * of a heartbeat's pending calls) that an `ask` rule holds. The decision is
 * stored in the state dir (or the database with `--database-url`): a running heartbeat picks it up within a second, a
 * stopped one when it resumes. `deny` shares this module's handler.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { RunEnvironment } from "./run.js";
import { type LocationArgs, locationOptions, withPlace } from "./status.js";

/** Options of `approve` and `deny`. */
export interface DecideArgs extends LocationArgs {
  id: string;
  call?: string;
  reason?: string;
}

/** Builds the options both deciding commands share. */
export function decideOptions(yargs: Argv) {
  return locationOptions(yargs)
    .positional("id", { type: "string", describe: "The heartbeat id", demandOption: true })
    .option("call", {
      type: "string",
      describe: "Decide only this pending call (its id, from `ravenclaws approvals`); default all",
    });
}

/** Stores a decision and says what happens next. */
export async function decide(
  argv: ArgumentsCamelCase<DecideArgs>,
  io: RunEnvironment,
  decision: "approve" | "deny",
): Promise<void> {
  const [{ decideApproval }, hb, { currentDecider }] = await Promise.all([
    import("../services/approvals.js"),
    import("../services/heartbeats.js"),
    import("../services/approvalWait.js"),
  ]);
  const id = hb.checkId(String(argv.id));
  const { written, view } = await withPlace(argv, io, async (place) => {
    const written = await decideApproval(place, id, {
      callId: argv.call,
      decision,
      reason: argv.reason,
      by: currentDecider(),
    });
    return { written, view: await place.view(id) };
  });
  const verb = decision === "approve" ? "Approved" : "Denied";
  const calls = written.map((d) => d.callId).join(", ");
  const next = view.process.running
    ? "the heartbeat picks it up within a second."
    : view.database?.stoppedAt
      ? `heartbeat ${id} is stopped: the decision applies once it is started (\`ravenclaws start ${id}\`).`
      : view.database
        ? `no worker is on heartbeat ${id} right now: the decision applies when one runs it again.`
        : `heartbeat ${id} is not running: the decision applies when it resumes (\`ravenclaws run --id ${id}\`).`;
  io.stdout.write(
    `${verb} ${written.length === 1 ? "call" : "calls"} ${calls} of ${id}; ${next}\n`,
  );
}

/** `approve`'s yargs module, bound to the process it runs in. */
export function approveCommand(environment: () => RunEnvironment) {
  return {
    command: "approve <id>",
    describe: "Approve tool calls waiting for approval (all of the heartbeat's, or --call)",
    builder: (yargs: Argv) =>
      decideOptions(yargs)
        .example("$0 approve my-heartbeat", "let every pending call of my-heartbeat run")
        .example("$0 approve my-heartbeat --call call_abc", "only this one"),
    handler: (argv: ArgumentsCamelCase<DecideArgs>) => decide(argv, environment(), "approve"),
  };
}
