/**
 * `--database-url` and `--embedded-db`, as every command that takes them
 * declares and opens them: {@link databaseOptions} (yargs) and
 * {@link databaseFromArgs} (a {@link Database}, or null when neither is
 * given). Both settings are declared once in `src/settings.ts`; the URL is a
 * secret (flag or environment only, never saved, its password redacted).
 */
import * as path from "node:path";
import type { Argv } from "yargs";
import { UsageError } from "../../errors.js";
import { SETTINGS } from "../../settings.js";
import type { Redactor } from "../redact.js";
import type { Database } from "./db.js";

/** The options of a command that uses the database. */
export interface DatabaseArgs {
  databaseUrl?: string;
  embeddedDb?: string;
}

/** Declares `--database-url` and `--embedded-db` (from their settings' specs) on a command. */
export function databaseOptions<T>(yargs: Argv<T>): Argv<T & DatabaseArgs> {
  return yargs
    .option(SETTINGS.databaseUrl.flag, {
      type: "string",
      describe: `${SETTINGS.databaseUrl.help} (also ${SETTINGS.databaseUrl.env.join(", ")})`,
      requiresArg: true,
    })
    .option(SETTINGS.embeddedDb.flag, {
      type: "string",
      describe: `${SETTINGS.embeddedDb.help} (also ${SETTINGS.embeddedDb.env.join(", ")})`,
      requiresArg: true,
    }) as unknown as Argv<T & DatabaseArgs>;
}

/** Which database the options and environment name: flag > environment; null when none. */
export function databaseTargetOf(
  argv: DatabaseArgs,
  env: NodeJS.ProcessEnv,
): { kind: "url"; url: string } | { kind: "embedded"; dir: string } | null {
  const fromEnv = (names: readonly string[]) =>
    names.map((name) => env[name]?.trim()).find((value) => value) || undefined;
  const flagUrl = argv.databaseUrl?.trim();
  const flagDir = argv.embeddedDb?.trim();
  if (argv.databaseUrl !== undefined && !flagUrl)
    throw new UsageError("--database-url is empty.", {
      option: "--database-url",
      hint: "Give it as postgres://USER:PASSWORD@HOST:PORT/DATABASE.",
    });
  if (argv.embeddedDb !== undefined && !flagDir)
    throw new UsageError("--embedded-db is empty.", {
      option: "--embedded-db",
      hint: "Give the directory the embedded PostgreSQL keeps its data in.",
    });
  if (flagUrl && flagDir)
    throw new UsageError("Give --database-url or --embedded-db, not both.", {
      option: "--embedded-db",
      hint: "--database-url names a PostgreSQL server; --embedded-db runs one here.",
    });
  if (flagUrl) return { kind: "url", url: flagUrl };
  if (flagDir) return { kind: "embedded", dir: flagDir };
  const envUrl = fromEnv(SETTINGS.databaseUrl.env);
  if (envUrl) return { kind: "url", url: envUrl };
  const envDir = fromEnv(SETTINGS.embeddedDb.env);
  if (envDir) return { kind: "embedded", dir: envDir };
  return null;
}

/** Options of {@link databaseFromArgs}. */
export interface DatabaseFromArgsOptions {
  /** The caller's redactor (API key, …); the URL's password is added to it. */
  redact?: Redactor;
  /**
   * What to do with the schema: `check` (default: refuse a database not
   * migrated, or migrated by a newer ravenclaws), `migrate` (bring it up to
   * date, what `worker` does), `none` (what `db migrate` asks, to migrate it
   * itself). An embedded database is migrated unless `none`: it is this
   * installation's own.
   */
  schema?: "check" | "migrate" | "none";
  /** Most connections at once. */
  max?: number;
  /** The `pg_stat_activity` name. */
  applicationName?: string;
}

/**
 * Opens the database `--database-url` / `--embedded-db` (or their environment
 * variables) name, or returns null when neither is given. `close()` also
 * stops the embedded server when this process started it. Errors:
 * {@link UsageError} for both or an empty value, {@link DatabaseError} for a
 * bad URL, an unreachable server, a refused login, a schema this version
 * cannot use.
 */
export async function databaseFromArgs(
  argv: DatabaseArgs,
  io: { cwd: string; env: NodeJS.ProcessEnv },
  options: DatabaseFromArgsOptions = {},
): Promise<Database | null> {
  const target = databaseTargetOf(argv, io.env);
  if (!target) return null;
  const [{ openDatabase }, migrations] = await Promise.all([
    import("./db.js"),
    import("./migrations.js"),
  ]);
  let url: string;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (target.kind === "embedded") {
    const { openEmbeddedDir } = await import("./embedded.js");
    const embedded = await openEmbeddedDir(path.resolve(io.cwd, target.dir));
    url = embedded.url;
    stopEmbedded = embedded.close;
  } else {
    url = target.url;
  }
  let db: Database;
  try {
    db = await openDatabase(url, {
      ...(options.redact ? { redact: options.redact } : {}),
      ...(options.max ? { max: options.max } : {}),
      ...(options.applicationName ? { applicationName: options.applicationName } : {}),
    });
    const schema =
      target.kind === "embedded" && options.schema !== "none"
        ? "migrate"
        : (options.schema ?? "check");
    try {
      if (schema === "migrate") await migrations.migrateDatabase(db);
      else if (schema === "check") await migrations.checkSchema(db);
    } catch (error) {
      await db.close();
      throw error;
    }
  } catch (error) {
    await stopEmbedded?.();
    throw error;
  }
  if (!stopEmbedded) return db;
  const close = db.close;
  const stop = stopEmbedded;
  return {
    ...db,
    async close() {
      await close();
      await stop();
    },
  };
}
