/**
 * `ravenclaws start <id>`: undoes a stop on purpose. With a `serve` hosting
 * the state dir, asks it (request file) to host the heartbeat again and waits
 * until it does; without one, clears the stop so the next `serve` hosts it,
 * and says how to run it now.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { UsageError } from "../errors.js";
import type { HeartbeatPlace, PlaceControl } from "../services/places.js";
import type { RunEnvironment } from "./run.js";
import {
  type LocationArgs,
  locationOptions,
  stateDirOf,
  usesDatabase,
  withPlace,
} from "./status.js";

/** Options of `start`. */
export interface StartArgs extends LocationArgs {
  id: string;
  timeout?: number;
}

const POLL_MS = 100;

/** `start`'s yargs module, bound to the process it runs in. */
export function startCommand(environment: () => RunEnvironment) {
  return {
    command: "start <id>",
    describe: "Start again a heartbeat that was stopped on purpose (hosted by serve, or runnable)",
    builder: (yargs: Argv) =>
      locationOptions(yargs)
        .positional("id", { type: "string", describe: "The heartbeat id", demandOption: true })
        .option("timeout", {
          type: "number",
          describe: "Seconds to wait for a running serve to host it again",
          default: 10,
          requiresArg: true,
        })
        .example("$0 start my-heartbeat", "host it again after `ravenclaws stop my-heartbeat`")
        .example(
          "$0 start my-heartbeat --database-url postgres://host/db",
          "workers run it again, a tick now",
        ),
    handler: async (argv: ArgumentsCamelCase<StartArgs>) => {
      const io = environment();
      const timeout = argv.timeout ?? 10;
      if (!Number.isFinite(timeout) || timeout < 0) {
        throw new UsageError(`--timeout must be 0 or more seconds, got ${String(argv.timeout)}.`, {
          option: "--timeout",
        });
      }
      const hb = await import("../services/heartbeats.js");
      const id = hb.checkId(String(argv.id));
      if (usesDatabase(argv, io.env)) {
        await withPlace(argv, io, (place) => startInDatabase(place, id, io));
        return;
      }
      const files = await import("../host/files.js");
      const stateDir = await stateDirOf(argv, io);
      const paths = await hb.requireHeartbeat(stateDir, id);
      const view = await hb.loadHeartbeat(paths, id);
      if (view.process.running) {
        io.stdout.write(
          `Heartbeat ${id} is already running (pid ${view.process.pid}${view.process.hosted ? ", hosted" : ""}).\n`,
        );
        return;
      }
      const file = view.file;
      if (file?.status === "completed" || file?.status === "failed") {
        throw new hb.CommandFailedError(
          "not-running",
          `Heartbeat ${id} has ended (${hb.describeState(view)} at tick ${file.tick}); start does not continue it.`,
          {
            hint: file.completed
              ? "It met its goal: there is nothing left to run."
              : `Continue it with \`ravenclaws run --id ${id} --continue\`.`,
          },
        );
      }
      const record = await files.readHostRecord(stateDir, id);
      const host = await hb.processOf(files.leasePath(stateDir));
      if (host.running && host.local) {
        await files.writeRequest(stateDir, "start", id, `ravenclaws start (pid ${process.pid})`);
        const deadline = Date.now() + timeout * 1000;
        for (;;) {
          const proc = await hb.processOf(paths.lock);
          if (proc.running) break;
          if (Date.now() >= deadline) {
            throw new hb.CommandFailedError(
              "stop-timeout",
              `The serve process (pid ${host.pid}) has not taken heartbeat ${id} up within ${timeout} s.`,
              { hint: "See `ravenclaws status`; its lock may be held by another process." },
            );
          }
          await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        }
        io.stdout.write(`Started heartbeat ${id}: hosted by serve (pid ${host.pid}) again.\n`);
        return;
      }
      if (record?.stopped) await files.setStopped(stateDir, id, null);
      io.stdout.write(
        `${record?.stopped ? `Heartbeat ${id} is no longer stopped` : `Heartbeat ${id} was not stopped on purpose`}; nothing runs it now. Run it with \`ravenclaws run --id ${id}\`, or \`ravenclaws serve\` hosts it.\n`,
      );
    },
  };
}

/** `start` of a heartbeat in a database: clears the stop on purpose; a worker ticks it now. */
async function startInDatabase(place: HeartbeatPlace, id: string, io: RunEnvironment) {
  const hb = await import("../services/heartbeats.js");
  const { refuseEnded } = await import("./wake.js");
  const view = await place.view(id);
  refuseEnded(view, hb, { allowStopped: true });
  if (!view.database?.stoppedAt) {
    io.stdout.write(
      `Heartbeat ${id} was not stopped on purpose; workers run its ticks when they are due (\`ravenclaws wake ${id}\` ticks it now).\n`,
    );
    return;
  }
  await (place.control as PlaceControl).start(id);
  io.stdout.write(`Started heartbeat ${id}: a worker runs its next tick now.\n`);
}
