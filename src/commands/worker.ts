/**
 * `ravenclaws worker`: runs the ticks of heartbeats kept in PostgreSQL
 * (`--database-url`, `RAVENCLAWS_DATABASE_URL`, or `--embedded-db DIR` for a
 * single-machine trial), at most `--concurrency` at a time, until SIGINT or
 * SIGTERM: then in-flight ticks finish or are abandoned within a second
 * (another worker runs them again from the last committed snapshot) and it
 * exits 0. A second signal exits at once.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { UsageError } from "../errors.js";
import { type DatabaseArgs, databaseOptions } from "../services/pg/connect.js";
import { SETTINGS } from "../settings.js";
import type { RunEnvironment } from "./run.js";

/** Options of `worker`. */
export interface WorkerArgs extends DatabaseArgs {
  concurrency?: number;
  leaseTtl?: number;
  apiKey?: string;
  json?: boolean;
  quiet?: boolean;
}

/** Declares `worker`'s options. */
export function workerOptions<T>(yargs: Argv<T>): Argv<T & WorkerArgs> {
  return databaseOptions(yargs)
    .option("concurrency", {
      type: "number",
      describe: "At most this many ticks at the same time",
      defaultDescription: "4",
      requiresArg: true,
    })
    .option("lease-ttl", {
      type: "number",
      describe:
        "Seconds a tick's lease outlives a dead worker (SIGKILL, a lost machine) before another worker runs that tick again",
      defaultDescription: "15",
      requiresArg: true,
    })
    .option("api-key", {
      type: "string",
      describe: `${SETTINGS.apiKey.help}; used for every heartbeat this worker runs, never stored`,
      requiresArg: true,
    })
    .option("json", {
      type: "boolean",
      describe: "Print the worker's events as JSON lines on stdout",
    })
    .option("quiet", {
      type: "boolean",
      alias: "q",
      describe: "Print nothing but errors",
    }) as unknown as Argv<T & WorkerArgs>;
}

/** Runs the worker until SIGINT/SIGTERM. */
export async function workerCommandHandler(argv: WorkerArgs, io: RunEnvironment): Promise<void> {
  const concurrency = argv.concurrency;
  if (
    concurrency !== undefined &&
    (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000)
  ) {
    throw new UsageError(
      `--concurrency must be a whole number from 1 to 1000, not ${String(concurrency)}.`,
      { option: "--concurrency", code: "invalid-concurrency" },
    );
  }
  const leaseTtl = argv.leaseTtl;
  if (leaseTtl !== undefined && (!Number.isFinite(leaseTtl) || leaseTtl < 1 || leaseTtl > 3600)) {
    throw new UsageError(`--lease-ttl must be from 1 to 3600 seconds, not ${String(leaseTtl)}.`, {
      option: "--lease-ttl",
      code: "invalid-lease-ttl",
    });
  }
  const [{ loadUserConfig, resolveRunSettings }, { createRedactor }, { databaseFromArgs }] =
    await Promise.all([
      import("../services/config.js"),
      import("../services/redact.js"),
      import("../services/pg/connect.js"),
    ]);
  // The API key (flag, environment or user config) is the process's: handed
  // to the heartbeats through the environment, never saved with one.
  const user = await loadUserConfig(io.env);
  const { settings } = resolveRunSettings({
    flags: { apiKey: argv.apiKey },
    env: io.env,
    ...(user ? { user } : {}),
  });
  const keyVariable = SETTINGS.apiKey.env[0];
  const env: NodeJS.ProcessEnv = {
    ...io.env,
    ...(settings.apiKey ? { [keyVariable]: settings.apiKey } : {}),
  };
  const redact = createRedactor([
    settings.apiKey,
    ...SETTINGS.apiKey.env.map((name) => io.env[name]),
  ]);

  // Listen for signals first: a SIGTERM during start-up still ends cleanly.
  let stopRequested = false;
  let wakeUp: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    wakeUp = resolve;
  });
  const unsubscribe = io.onSignal(() => {
    stopRequested = true;
    wakeUp();
  });
  let clean = redact;
  const say = (line: string) => {
    if (!argv.quiet) io.stderr.write(`${clean(line)}\n`);
  };
  try {
    // Opened (and migrated) before anything runs; its password joins the redactor.
    const db = await databaseFromArgs(argv, io, {
      schema: "migrate",
      redact,
      applicationName: "ravenclaws worker",
      max: Math.max(10, (concurrency ?? 4) * 2 + 2),
    });
    if (!db) {
      throw new UsageError("worker needs a database: --database-url URL or --embedded-db DIR.", {
        option: "--database-url",
        code: "database-required",
        hint: "Give --database-url postgres://… (or RAVENCLAWS_DATABASE_URL), or --embedded-db DIR for a trial on this machine.",
      });
    }
    clean = db.redact;
    try {
      const { startWorker } = await import("../worker/worker.js");
      const worker = await startWorker(
        {
          db,
          env,
          migrate: false,
          ...(leaseTtl !== undefined ? { leaseTtlMs: leaseTtl * 1000 } : {}),
          ...(concurrency !== undefined ? { concurrency } : {}),
        },
        user ? { userConfig: user } : {},
      );
      worker.on((event) => {
        if (argv.json) {
          const { file: _file, ...rest } = event as { file?: unknown };
          if (event.type === "state" || event.type === "persisted") return;
          io.stdout.write(`${clean(JSON.stringify(rest))}\n`);
          return;
        }
        if (event.type === "error") say(`ravenclaws worker: ${event.message}`);
        if (event.type === "rescued") {
          say(`ravenclaws worker: rescued ${event.id} (${event.why}): its tick runs again now.`);
        }
        if (event.type === "job" && event.outcome === "error") {
          say(`ravenclaws worker: ${event.id}: ${event.message ?? "the tick failed"}`);
        }
      });
      say(
        `ravenclaws: worker ${process.pid} running ticks of ${db.url} (concurrency ${concurrency ?? 4})`,
      );
      if (!stopRequested) await stopped;
      await worker.stop();
      say("ravenclaws: worker stopped.");
    } finally {
      await db.close();
    }
  } finally {
    unsubscribe();
  }
}

/** `worker`'s yargs module, bound to the process it runs in. */
export function workerCommand(environment: () => RunEnvironment) {
  return {
    command: "worker",
    describe: "Run the ticks of heartbeats kept in PostgreSQL (--database-url), until SIGTERM",
    builder: (yargs: Argv) =>
      workerOptions(yargs)
        .example("$0 worker --database-url postgres://ravenclaws@db/ravenclaws", "one worker")
        .example(
          "$0 worker --embedded-db ~/.ravenclaws-db --concurrency 8",
          "a trial on this machine",
        ),
    handler: (argv: ArgumentsCamelCase<WorkerArgs>) => workerCommandHandler(argv, environment()),
  };
}
