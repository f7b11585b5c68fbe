/**
 * `ravenclaws wake <id>`: tells the process running a heartbeat (found
 * through its lock) to start its next tick now, with SIGUSR2. Returns once the
 * signal is sent; the tick is journaled with wake reason `wake`. A heartbeat
 * hosted by `serve` gets a request file instead (picked up within a second).
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { RunEnvironment } from "./run.js";
import { type LocationArgs, locationOptions, stateDirOf } from "./status.js";

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
        .example("$0 wake my-heartbeat", "tick now instead of at the next scheduled time"),
    handler: async (argv: ArgumentsCamelCase<WakeArgs>) => {
      const io = environment();
      const hb = await import("../services/heartbeats.js");
      const id = hb.checkId(String(argv.id));
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
