/**
 * `ravenclaws stop <id>`: asks the process running a heartbeat (found through
 * its lock) to shut down with SIGTERM, as Ctrl-C in its terminal would, and
 * waits until it has saved its state and released the lock. A heartbeat
 * hosted by `serve` (its lock names the host's lease) is asked through a
 * request file instead, so that only it stops, never the host.
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

/** Options of `stop`. */
export interface StopArgs extends LocationArgs {
  id: string;
  timeout?: number;
}

/** How often `stop` looks whether the process has let go of the lock. */
const POLL_MS = 100;

/** `stop`'s yargs module, bound to the process it runs in. */
export function stopCommand(environment: () => RunEnvironment) {
  return {
    command: "stop <id>",
    describe: "Ask a running heartbeat to save its state and shut down; waits until it has",
    builder: (yargs: Argv) =>
      locationOptions(yargs)
        .positional("id", { type: "string", describe: "The heartbeat id", demandOption: true })
        .option("timeout", {
          type: "number",
          describe: "Seconds to wait for it to shut down",
          default: 30,
          requiresArg: true,
        })
        .example(
          "$0 stop my-heartbeat",
          "stop it from another terminal (exit 1 if it is not running)",
        )
        .example("$0 stop my-heartbeat --timeout 5", "wait at most 5 seconds")
        .example(
          "$0 stop my-heartbeat --database-url postgres://host/db",
          "no worker runs it until `start`",
        ),
    handler: async (argv: ArgumentsCamelCase<StopArgs>) => {
      const io = environment();
      const timeout = argv.timeout ?? 30;
      if (!Number.isFinite(timeout) || timeout < 0) {
        throw new UsageError(`--timeout must be 0 or more seconds, got ${String(argv.timeout)}.`, {
          option: "--timeout",
        });
      }
      const hb = await import("../services/heartbeats.js");
      const id = hb.checkId(String(argv.id));
      if (usesDatabase(argv, io.env)) {
        await withPlace(argv, io, (place) => stopInDatabase(place, id, timeout, io));
        return;
      }
      const stateDir = await stateDirOf(argv, io);
      const paths = await hb.requireHeartbeat(stateDir, id);
      const view = await hb.loadHeartbeat(paths, id);
      const pid = hb.localProcessOf(view);
      const hosted = view.process.running && view.process.hosted;
      if (hosted) {
        // A host (serve) runs many heartbeats: a signal would stop them all. It
        // picks this request up within a second and stops this one only.
        const { writeRequest } = await import("../host/files.js");
        await writeRequest(stateDir, "stop", id, `ravenclaws stop (pid ${process.pid})`);
        io.stderr.write(`Stopping heartbeat ${id} (hosted by pid ${pid})…\n`);
      } else {
        hb.signalProcess(view, pid, "SIGTERM");
        io.stderr.write(`Stopping heartbeat ${id} (pid ${pid})…\n`);
      }

      const deadline = Date.now() + timeout * 1000;
      for (;;) {
        const proc = await hb.processOf(paths.lock);
        if (!proc.running || proc.pid !== pid) break;
        if (Date.now() >= deadline) {
          throw new hb.CommandFailedError(
            "stop-timeout",
            `Heartbeat ${id} (pid ${pid}) has not shut down within ${timeout} s.`,
            {
              hint: `It may still be saving; run \`ravenclaws status\` to see. \`kill -9 ${pid}\` ends it at once; \`ravenclaws run --id ${id}\` then resumes from its last saved state.`,
            },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }

      const after = await hb.loadHeartbeat(paths, id);
      const file = after.file;
      if (!file) {
        io.stdout.write(`Heartbeat ${id} stopped before its first tick was saved.\n`);
      } else if (file.status === "shutdown" && hosted) {
        io.stdout.write(
          `Heartbeat ${id} shut down at tick ${file.tick}; state saved. It stays stopped until \`ravenclaws start ${id}\`.\n`,
        );
      } else if (file.status === "shutdown") {
        io.stdout.write(
          `Heartbeat ${id} shut down at tick ${file.tick}; state saved. Resume it with \`ravenclaws run --id ${id}\`.\n`,
        );
      } else {
        io.stdout.write(
          `Heartbeat ${id} has ended: ${hb.describeState(after)} at tick ${file.tick}.\n`,
        );
      }
    },
  };
}

/**
 * `stop` of a heartbeat in a database: marks it stopped on purpose (no worker
 * takes its ticks), then waits until a worker in the middle of one of its
 * ticks has let go of its lease.
 */
async function stopInDatabase(
  place: HeartbeatPlace,
  id: string,
  timeout: number,
  io: RunEnvironment,
) {
  const hb = await import("../services/heartbeats.js");
  const { refuseEnded } = await import("./wake.js");
  const view = await place.view(id);
  refuseEnded(view, hb);
  await (place.control as PlaceControl).stop(id);
  const proc = view.process;
  const waiting = hb.waitingRoundOf(view.file);
  if (proc.running && waiting) {
    // Its tick waits for the operator on that worker: waiting for the lease would wait for a decision.
    io.stdout.write(
      `Heartbeat ${id} is stopped: no new tick starts. Its tick ${waiting.tick} still waits on ${proc.host} (pid ${proc.pid}) for approval of ${waiting.pending.length} tool call${waiting.pending.length === 1 ? "" : "s"} and ends once they are decided (\`ravenclaws approvals\`). \`ravenclaws start ${id}\` undoes the stop.\n`,
    );
    return;
  }
  if (proc.running) {
    io.stderr.write(`Stopping heartbeat ${id} (a tick runs on ${proc.host}, pid ${proc.pid})…\n`);
    const deadline = Date.now() + timeout * 1000;
    for (;;) {
      const now = (await place.view(id)).process;
      if (!now.running || now.pid !== proc.pid || now.host !== proc.host) break;
      if (Date.now() >= deadline) {
        throw new hb.CommandFailedError(
          "stop-timeout",
          `Heartbeat ${id} is stopped, but the worker running its tick (pid ${proc.pid} on ${proc.host}) has not let go of it within ${timeout} s.`,
          {
            hint: "No new tick starts; the one in progress ends or is abandoned by its worker. See `ravenclaws status`.",
          },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  const after = await place.view(id);
  const tick = after.file ? ` at tick ${after.file.tick}` : " before its first tick";
  io.stdout.write(
    `Heartbeat ${id} stopped${tick}; state saved. No worker runs it until \`ravenclaws start ${id}\`.\n`,
  );
}
