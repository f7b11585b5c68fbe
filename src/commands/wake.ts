/**
 * `ravenclaws wake <id>`: tells the process running a heartbeat (found
 * through its lock) to start its next tick now, with SIGUSR2. Returns once the
 * signal is sent; the tick is journaled with wake reason `wake`. A heartbeat
 * hosted by `serve` gets a request file instead (picked up within a second).
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { HeartbeatPlace, PlaceControl } from "../services/places.js";
import type { RunEnvironment } from "./run.js";
import {
  type LocationArgs,
  locationOptions,
  stateDirOf,
  usesDatabase,
  withPlace,
} from "./status.js";

/** Options of `wake`. */
export interface WakeArgs extends LocationArgs {
  id: string;
}

/** `wake`'s yargs module, bound to the process it runs in. */
export function wakeCommand(environment: () => RunEnvironment) {
  return {
    command: "wake <id>",
    describe: "Make a sleeping heartbeat start its next tick now",
    builder: (yargs: Argv) =>
      locationOptions(yargs)
        .positional("id", { type: "string", describe: "The heartbeat id", demandOption: true })
        .example("$0 wake my-heartbeat", "tick now instead of at the next scheduled time")
        .example("$0 wake my-heartbeat --database-url postgres://host/db", "a worker ticks it now"),
    handler: async (argv: ArgumentsCamelCase<WakeArgs>) => {
      const io = environment();
      const hb = await import("../services/heartbeats.js");
      const id = hb.checkId(String(argv.id));
      if (usesDatabase(argv, io.env)) {
        await withPlace(argv, io, (place) => wakeInDatabase(place, id, io));
        return;
      }
      const stateDir = await stateDirOf(argv, io);
      const view = await hb.loadHeartbeat(await hb.requireHeartbeat(stateDir, id), id);
      const pid = hb.localProcessOf(view);
      const file = view.file;
      const now = Date.now();
      // A running heartbeat whose saved next tick is ahead is asleep (also one resumed from
      // `shutdown`, which sleeps before its first write).
      const asleep = !!file?.nextTickAt && Date.parse(file.nextTickAt) > now;
      const waiting = hb.waitingRoundOf(file);
      if (waiting) {
        // Waking would not decide anything: the tick waits for the operator.
        io.stdout.write(
          `Heartbeat ${id} (pid ${pid}) is in tick ${waiting.tick} waiting for approval of ${waiting.pending.length} tool call${waiting.pending.length === 1 ? "" : "s"}; there is nothing to wake. Decide: ravenclaws approve ${id}  or  ravenclaws deny ${id} (\`ravenclaws approvals\` lists them).\n`,
        );
        return;
      }
      if (!file?.nextTickAt || !asleep) {
        // The heartbeat only listens for a wake while it sleeps; mid-tick it would be lost.
        io.stdout.write(
          `Heartbeat ${id} (pid ${pid}) is working on a tick right now; there is nothing to wake.\n`,
        );
        return;
      }
      if (view.process.running && view.process.hosted) {
        // Never a signal to a host: the request file wakes this heartbeat only.
        const { writeRequest } = await import("../host/files.js");
        await writeRequest(stateDir, "wake", id, `ravenclaws wake (pid ${process.pid})`);
      } else {
        hb.signalProcess(view, pid, "SIGUSR2");
      }
      io.stdout.write(
        `Woke heartbeat ${id} (pid ${pid}): its next tick starts now instead of ${hb.formatNextTick(file.nextTickAt, now)}.\n`,
      );
    },
  };
}

/**
 * `wake` of a heartbeat in a database: no process of its own to signal; its
 * next tick job is moved to now (or sent), and the next free worker takes it.
 */
async function wakeInDatabase(place: HeartbeatPlace, id: string, io: RunEnvironment) {
  const hb = await import("../services/heartbeats.js");
  const view = await place.view(id);
  const file = view.file;
  const waiting = hb.waitingRoundOf(file);
  if (waiting) {
    io.stdout.write(
      `Heartbeat ${id} is in tick ${waiting.tick} waiting for approval of ${waiting.pending.length} tool call${waiting.pending.length === 1 ? "" : "s"}; there is nothing to wake. Decide: ravenclaws approve ${id}  or  ravenclaws deny ${id} (\`ravenclaws approvals\` lists them).\n`,
    );
    return;
  }
  refuseEnded(view, hb);
  if (view.process.running) {
    io.stdout.write(
      `Heartbeat ${id} (pid ${view.process.pid} on ${view.process.host}) is working on a tick right now; there is nothing to wake.\n`,
    );
    return;
  }
  await (place.control as PlaceControl).wake(id);
  const was =
    file?.nextTickAt && file.status === "sleeping"
      ? ` instead of ${hb.formatNextTick(file.nextTickAt)}`
      : "";
  io.stdout.write(`Woke heartbeat ${id}: a worker starts its next tick now${was}.\n`);
}

/**
 * A heartbeat in a database that cannot be woken, stopped or started: it has
 * ended, or (unless `allowStopped`) it was stopped on purpose. Exit 1, as for
 * a heartbeat that is not running in the file mode.
 */
export function refuseEnded(
  view: import("../services/heartbeats.js").HeartbeatView,
  hb: typeof import("../services/heartbeats.js"),
  options: { allowStopped?: boolean } = {},
): void {
  const file = view.file;
  if (file && (file.status === "completed" || file.status === "failed")) {
    throw new hb.CommandFailedError(
      "not-running",
      `Heartbeat ${view.id} is not running (state: ${hb.describeState(view)} at tick ${file.tick}).`,
      {
        hint: file.completed
          ? "It has met its goal: there is nothing left to run."
          : `Continue it in the file mode with \`ravenclaws migrate --to <state dir>\` and \`ravenclaws run --id ${view.id} --continue\`.`,
      },
    );
  }
  if (!options.allowStopped && view.database?.stoppedAt) {
    throw new hb.CommandFailedError(
      "not-running",
      `Heartbeat ${view.id} is stopped (on purpose, since ${hb.formatDateTime(view.database.stoppedAt)}); no worker runs it.`,
      { hint: `Start it again with \`ravenclaws start ${view.id}\` (same --database-url).` },
    );
  }
}
