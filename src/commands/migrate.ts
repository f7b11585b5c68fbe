/**
 * `ravenclaws migrate --from <state dir> --database-url …` moves file
 * heartbeats into a database; `migrate --to <state dir> --database-url …`
 * moves them back. Each heartbeat moves whole or not at all; a running one
 * is refused (see `services/pg/move.ts`). Safe to run again.
 */
import * as path from "node:path";
import type { ArgumentsCamelCase, Argv } from "yargs";
import { CommandFailedError, UsageError } from "../errors.js";
import { type DatabaseArgs, databaseOptions, databaseTargetOf } from "../services/pg/connect.js";
import type { RunEnvironment } from "./run.js";

/** Options of `migrate`. */
export interface MigrateArgs extends DatabaseArgs {
  from?: string;
  to?: string;
  workdir?: string;
  ids?: string[];
  json?: boolean;
}

/** `migrate`'s yargs module, bound to the process it runs in. */
export function migrateCommand(environment: () => RunEnvironment) {
  return {
    command: "migrate [ids..]",
    describe: "Move heartbeats from a state dir into a database (--from), or back (--to)",
    builder: (yargs: Argv) =>
      databaseOptions(yargs)
        .positional("ids", {
          type: "string",
          array: true,
          describe: "Only these heartbeats (default: all of them)",
        })
        .option("from", {
          type: "string",
          describe: "Move the heartbeats of this state dir into the database",
          requiresArg: true,
        })
        .option("to", {
          type: "string",
          describe: "Move the database's heartbeats into this state dir",
          requiresArg: true,
        })
        .option("workdir", {
          type: "string",
          describe:
            "With --from: the workdir of heartbeats whose state dir does not say it (default: the parent of a .ravenclaws state dir)",
          requiresArg: true,
        })
        .option("json", {
          type: "boolean",
          describe: "Print a JSON array, one object per heartbeat",
        })
        .example(
          "$0 migrate --from .ravenclaws --database-url postgres://host/db",
          "move this workspace's heartbeats into the database",
        )
        .example(
          "$0 migrate --to .ravenclaws --database-url postgres://host/db my-heartbeat",
          "bring one back to the files",
        ),
    handler: async (argv: ArgumentsCamelCase<MigrateArgs>) => {
      const io = environment();
      if ((argv.from === undefined) === (argv.to === undefined)) {
        throw new UsageError(
          "migrate needs exactly one of --from <state dir> or --to <state dir>.",
          {
            option: argv.from === undefined ? "--from" : "--to",
            code: "migrate-direction",
            hint: "--from moves file heartbeats into the database, --to moves them back.",
          },
        );
      }
      if (!databaseTargetOf(argv, io.env)) {
        throw new UsageError("migrate needs the database: --database-url postgres://…", {
          option: "--database-url",
          code: "database-url-missing",
          hint: "Or set RAVENCLAWS_DATABASE_URL (or --embedded-db DIR for the one on this machine).",
        });
      }
      const hb = await import("../services/heartbeats.js");
      const ids = (argv.ids ?? []).map((id) => hb.checkId(String(id)));
      const stateDir = path.resolve(io.cwd, (argv.from ?? argv.to) as string);
      const [{ databaseFromArgs }, move] = await Promise.all([
        import("../services/pg/connect.js"),
        import("../services/pg/move.js"),
      ]);
      // Moving in sets the database up, as a worker's start does; moving out needs it set up.
      const db = await databaseFromArgs(argv, io, {
        schema: argv.from !== undefined ? "migrate" : "check",
      });
      if (!db) return;
      try {
        const print = (o: import("../services/pg/move.js").MoveOutcome) => {
          if (argv.json) return;
          (o.result === "refused" ? io.stderr : io.stdout).write(`${o.message}\n`);
        };
        let outcomes: import("../services/pg/move.js").MoveOutcome[];
        if (argv.from !== undefined) {
          if (ids.length === 0 && (await hb.listHeartbeatIds(stateDir)).length === 0) {
            if (!argv.json) io.stdout.write(`No heartbeats in ${stateDir}; nothing to move.\n`);
            if (argv.json) io.stdout.write("[]\n");
            return;
          }
          outcomes = await move.moveToDatabase(db, stateDir, {
            ...(ids.length > 0 ? { ids } : {}),
            ...(argv.workdir ? { workdir: path.resolve(io.cwd, argv.workdir) } : {}),
            onOutcome: print,
          });
        } else {
          outcomes = await move.moveToFiles(db, stateDir, {
            ...(ids.length > 0 ? { ids } : {}),
            onOutcome: print,
          });
          if (outcomes.length === 0 && !argv.json)
            io.stdout.write(`No heartbeats in the database ${db.url}; nothing to move.\n`);
        }
        if (argv.json) io.stdout.write(`${JSON.stringify(outcomes, null, 2)}\n`);
        const left = outcomes.filter((o) => o.result === "refused");
        if (left.length > 0) {
          throw new CommandFailedError(
            "not-moved",
            `${left.length} of ${outcomes.length} heartbeat${outcomes.length === 1 ? " was" : "s were"} not moved: ${left.map((o) => o.id).join(", ")}.`,
            { hint: "Each says why above; the others were moved. Running migrate again is safe." },
          );
        }
      } finally {
        await db.close();
      }
    },
  };
}
