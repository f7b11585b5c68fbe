/**
 * `ravenclaws create --goal … [settings]`: makes a heartbeat without running
 * it. In a state dir (the default: `<workdir>/.ravenclaws`), where `serve`
 * hosts it (a running `serve` of that dir is asked to at once); or, with
 * `--database-url` / `--embedded-db`, in the database, where workers run
 * it. Prints the new id (`--json`: an object).
 */
import { randomUUID } from "node:crypto";
import type { ArgumentsCamelCase, Argv } from "yargs";
import { type DatabaseArgs, databaseOptions } from "../services/pg/connect.js";
import { type RunEnvironment, type SettingArgs, settingOptions } from "./run.js";

/** Options of `create`. */
export interface CreateArgs extends SettingArgs, DatabaseArgs {
  config?: string;
}

/** Makes the heartbeat and prints its id. */
export async function createCommandHandler(argv: CreateArgs, io: RunEnvironment): Promise<void> {
  const [
    { loadTomlConfig, loadUserConfig, resolveRunSettings },
    { checkRunSettings, runFlags, requireGoalOrId },
    { checkWorkdir, createInDatabase, createInStateDir },
    path,
  ] = await Promise.all([
    import("../services/config.js"),
    import("./run.js"),
    import("../worker/create.js"),
    import("node:path"),
  ]);
  const { UsageError } = await import("../errors.js");
  const toml = await loadTomlConfig(
    io.cwd,
    argv.config,
    argv.workdir ?? (io.env.RAVENCLAWS_WORKDIR || undefined),
  );
  const user = await loadUserConfig(io.env);
  const { settings } = resolveRunSettings({
    flags: await runFlags(argv, io.cwd),
    env: io.env,
    ...(toml ? { toml } : {}),
    ...(user ? { user } : {}),
  });
  requireGoalOrId(settings);
  const goal = settings.goal?.trim();
  if (!goal) {
    throw new UsageError("--goal is required to create a heartbeat.", {
      option: "--goal",
      code: "goal-required",
      hint: 'Pass --goal "…" (or --goal-file FILE).',
    });
  }
  await checkRunSettings(settings);
  const workdir = await checkWorkdir(path.resolve(io.cwd, settings.workdir ?? "."), settings.tools);
  const id = settings.id ?? randomUUID();
  const heartbeat = { id, goal, workdir, settings };

  const { databaseFromArgs } = await import("../services/pg/connect.js");
  const { createRedactor } = await import("../services/redact.js");
  const db = await databaseFromArgs(argv, io, { redact: createRedactor([settings.apiKey]) });
  let created: Awaited<ReturnType<typeof createInStateDir>>;
  if (db) {
    try {
      created = await createInDatabase(db, heartbeat);
    } finally {
      await db.close();
    }
  } else {
    const stateDir = path.resolve(io.cwd, settings.stateDir ?? path.join(workdir, ".ravenclaws"));
    created = await createInStateDir(stateDir, heartbeat);
  }
  if (settings.json) {
    io.stdout.write(
      `${JSON.stringify({
        id: created.id,
        status: created.file.status,
        nextTickAt: created.file.nextTickAt,
        workdir: created.workdir,
        where: created.where,
      })}\n`,
    );
  } else {
    io.stdout.write(`${created.id}\n`);
    io.stderr.write(
      `ravenclaws: created heartbeat ${created.id} in ${created.where} (workdir ${created.workdir}); its first tick is due now.\n`,
    );
  }
}

/** `create`'s yargs module, bound to the process it runs in. */
export function createCommand(environment: () => RunEnvironment) {
  return {
    command: "create",
    describe:
      "Make a heartbeat without running it: in the state dir (serve hosts it) or in the database (workers run it)",
    builder: (yargs: Argv) =>
      databaseOptions(settingOptions(yargs))
        .option("config", {
          type: "string",
          describe: "Path of a ravenclaws.toml",
          defaultDescription: "./ravenclaws.toml if present",
          requiresArg: true,
        })
        .example('$0 create --goal "Keep NOTES.md current" --id notes', "for `ravenclaws serve`")
        .example(
          '$0 create --goal "…" --workdir /srv/repo --database-url postgres://…',
          "for `ravenclaws worker`",
        ),
    handler: (argv: ArgumentsCamelCase<CreateArgs>) => createCommandHandler(argv, environment()),
  };
}
