/**
 * `ravenclaws status`: every heartbeat in the state dir, one row each. Also
 * the location options the read commands share. Kept light at import time:
 * the CLI's cold start is measured on this command.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { waitingRoundOf } from "../services/awaiting.js";
import type { HeartbeatView } from "../services/heartbeats.js";
import {
  type DatabaseArgs,
  databaseFromArgs,
  databaseOptions,
  databaseTargetOf,
} from "../services/pg/connect.js";
import type { HeartbeatPlace } from "../services/places.js";
import type { RunEnvironment } from "./run.js";

/** Where the read commands look for heartbeats; resolved exactly as `run` does. */
export interface LocationArgs extends DatabaseArgs {
  workdir?: string;
  stateDir?: string;
  config?: string;
}

/**
 * Declares `--workdir`, `--state-dir`, `--config`, and `--database-url` /
 * `--embedded-db` (the database instead of a state dir) for a read or control command.
 */
export function locationOptions<T>(yargs: Argv<T>): Argv<T & LocationArgs> {
  return databaseOptions(yargs)
    .option("workdir", {
      type: "string",
      describe: "The heartbeat's workspace (its state dir is <workdir>/.ravenclaws)",
      defaultDescription: "current directory",
      requiresArg: true,
    })
    .option("state-dir", {
      type: "string",
      describe: "Where state, journal and lock live",
      defaultDescription: "<workdir>/.ravenclaws",
      requiresArg: true,
    })
    .option("config", {
      type: "string",
      describe: "Path of a ravenclaws.toml (its [heartbeat] workdir and state_dir count)",
      defaultDescription: "./ravenclaws.toml if present",
      requiresArg: true,
    }) as unknown as Argv<T & LocationArgs>;
}

/**
 * The state dir `run` would use with these options: flags > environment
 * (`RAVENCLAWS_WORKDIR`, `RAVENCLAWS_STATE_DIR`) > `ravenclaws.toml` > `<cwd>/.ravenclaws`.
 */
export async function stateDirOf(
  argv: LocationArgs,
  io: Pick<RunEnvironment, "cwd" | "env">,
): Promise<string> {
  return (await locationsOf(argv, io)).stateDir;
}

/** Whether the command works on a database (`--database-url`, `--embedded-db` or their environment variables). */
export function usesDatabase(argv: DatabaseArgs, env: NodeJS.ProcessEnv): boolean {
  return databaseTargetOf(argv, env) !== null;
}

/**
 * Where the command works: the database of `--database-url` (pg is loaded
 * only then) or the state dir `run` would use. Close it when done.
 */
export async function placeOf(
  argv: LocationArgs,
  io: Pick<RunEnvironment, "cwd" | "env">,
): Promise<HeartbeatPlace> {
  // Opened (and its schema checked) only when one is named: pg is loaded then only.
  const db = await databaseFromArgs(argv, io);
  if (db) {
    const { databasePlace } = await import("../services/pg/place.js");
    return databasePlace(db);
  }
  const { filePlace } = await import("../services/places.js");
  return filePlace(await stateDirOf(argv, io));
}

/** Runs `fn` with the command's place and closes it afterwards. */
export async function withPlace<T>(
  argv: LocationArgs,
  io: Pick<RunEnvironment, "cwd" | "env">,
  fn: (place: HeartbeatPlace) => Promise<T>,
): Promise<T> {
  const place = await placeOf(argv, io);
  try {
    return await fn(place);
  } finally {
    await place.close();
  }
}

/** The workdir and state dir `run` would use with these options (see {@link stateDirOf}). */
export async function locationsOf(
  argv: LocationArgs,
  io: Pick<RunEnvironment, "cwd" | "env">,
): Promise<{ workdir: string; stateDir: string }> {
  const [{ loadTomlConfig, resolveRunSettings }, { resolveLocations }, { SETTINGS }] =
    await Promise.all([
      import("../services/config.js"),
      import("./run.js"),
      import("../settings.js"),
    ]);
  const toml = await loadTomlConfig(
    io.cwd,
    argv.config,
    argv.workdir ?? (io.env.RAVENCLAWS_WORKDIR || undefined),
  );
  // Only the location settings are read, so a bad value for another one
  // (say RAVENCLAWS_MAX_TICKS=abc) does not stop the read commands. The user
  // config holds no locations, so it is not read (conf is slow to load).
  const env = Object.fromEntries(
    [...SETTINGS.workdir.env, ...SETTINGS.stateDir.env].map((name) => [name, io.env[name]]),
  );
  const section = (toml?.data.heartbeat ?? {}) as Record<string, unknown>;
  const { settings } = resolveRunSettings({
    flags: { workdir: argv.workdir, stateDir: argv.stateDir },
    env,
    ...(toml
      ? {
          toml: {
            path: toml.path,
            data: { heartbeat: { workdir: section.workdir, state_dir: section.state_dir } },
          },
        }
      : {}),
  });
  return resolveLocations(settings, io.cwd);
}

/** Options of `status`. */
export interface StatusArgs extends LocationArgs {
  json?: boolean;
}

/** One row of `status --json`. */
export interface StatusRow {
  id: string;
  /** The state file's `status` (`sleeping`, `completed`, `failed`, `shutdown`), null before the first write or when unreadable. */
  status: string | null;
  /** What `status` prints: `running (pid N)`, `completed (goal met)`, `not running`, … */
  state: string;
  running: boolean;
  pid: number | null;
  host: string | null;
  tick: number | null;
  maxTicks: number | null;
  nextTickAt: string | null;
  tokens: number | null;
  goal: string | null;
  reason: string | null;
  createdAt: string | null;
  updatedAt: string | null;
  stateFile: string;
  /** Tool calls waiting for the operator's approval (empty when none). */
  awaitingApproval: Array<{
    callId: string;
    tool: string;
    arguments: string;
    rule: string;
    what: string;
    since: string;
  }>;
  /** Set when the state file cannot be used. */
  error?: { code: string; message: string };
}

/** The `status --json` row of one heartbeat. */
export function statusRow(view: HeartbeatView, state: string): StatusRow {
  const { file, process: proc } = view;
  return {
    id: view.id,
    status: file?.status ?? null,
    state,
    running: proc.running,
    pid: proc.running ? proc.pid : null,
    host: proc.running ? proc.host : null,
    tick: file?.tick ?? null,
    maxTicks: file?.snapshot.context.settings.maxTicks ?? null,
    nextTickAt: file?.nextTickAt ?? null,
    tokens: file?.usage.totalTokens ?? null,
    goal: file?.goal ?? view.database?.goal ?? null,
    reason: file?.reason ?? null,
    createdAt: file?.createdAt ?? view.database?.createdAt ?? null,
    updatedAt: file?.updatedAt ?? null,
    stateFile: view.paths.stateFile,
    awaitingApproval: waitingRoundOf(file)?.pending ?? [],
  };
}

/** Lays out rows as columns separated by two spaces; the last column is not padded. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * Writes the status of every heartbeat in `stateDir` to `out`. Throws the
 * first {@link StateFileError} (exit 3) after printing the others, when a
 * state file cannot be used.
 */
export async function printStatus(
  where: string | HeartbeatPlace,
  out: NodeJS.WritableStream,
  options: { json?: boolean; columns?: number; now?: number } = {},
): Promise<void> {
  const hb = await import("../services/heartbeats.js");
  const place =
    typeof where === "string" ? (await import("../services/places.js")).filePlace(where) : where;
  const { views, problems } = await place.loadAll();
  const now = options.now ?? Date.now();
  if (options.json) {
    const rows: StatusRow[] = views.map((v) => statusRow(v, hb.describeState(v)));
    for (const { id, error } of problems) {
      rows.push({
        id,
        status: null,
        state: "unreadable",
        running: false,
        pid: null,
        host: null,
        tick: null,
        maxTicks: null,
        nextTickAt: null,
        tokens: null,
        goal: null,
        reason: null,
        createdAt: null,
        updatedAt: null,
        stateFile: error.path,
        awaitingApproval: [],
        error: { code: error.code, message: error.message },
      });
    }
    out.write(`${JSON.stringify(rows, null, 2)}\n`);
  } else if (views.length === 0 && problems.length === 0) {
    out.write(
      place.kind === "database"
        ? `No heartbeats in the database ${place.where}.\nMake one with: ravenclaws create --goal "…" --database-url …\n`
        : `No heartbeats in ${place.where}.\nStart one with: ravenclaws run --goal "…" (or try \`ravenclaws demo\`).\n`,
    );
  } else {
    const rows = [["ID", "STATE", "TICK", "NEXT TICK", "TOKENS", "GOAL"]];
    for (const v of views) {
      const file = v.file;
      const max = file?.snapshot.context.settings.maxTicks ?? 0;
      rows.push([
        v.id,
        hb.describeState(v),
        file ? (max > 0 ? `${file.tick}/${max}` : String(file.tick)) : "0",
        hb.nextTickOf(v, now),
        file ? hb.formatCount(file.usage.totalTokens) : "0",
        file?.goal ?? v.database?.goal ?? "",
      ]);
    }
    for (const { id } of problems) rows.push([id, "unreadable", "-", "-", "-", ""]);
    // Clip the goal to the terminal width; 100 columns when not a terminal.
    const goalStart = [0, 1, 2, 3, 4].reduce(
      (sum, i) => sum + Math.max(...rows.map((r) => (r[i] ?? "").length)) + 2,
      0,
    );
    const room = Math.max(20, (options.columns ?? 100) - goalStart - 1);
    for (const row of rows.slice(1)) row[5] = hb.clip(row[5] ?? "", room);
    out.write(`${table(rows)}\n`);
  }
  const first = problems[0];
  if (first) throw first.error;
}

/** `status`'s yargs module, bound to the process it runs in. */
export function statusCommand(environment: () => RunEnvironment) {
  return {
    command: "status",
    describe: "List every heartbeat in the state dir: state, tick, next tick, tokens, goal",
    builder: (yargs: Argv) =>
      locationOptions(yargs)
        .option("json", {
          type: "boolean",
          describe: "Print a JSON array, one object per heartbeat",
        })
        .example("$0 status", "heartbeats of the current directory")
        .example("$0 status --workdir ~/notes --json", "as JSON, for another workspace")
        .example("$0 status --database-url postgres://host/db", "the heartbeats in a database"),
    handler: async (argv: ArgumentsCamelCase<StatusArgs>) => {
      const io = environment();
      const columns = (io.stdout as { columns?: number }).columns;
      await withPlace(argv, io, (place) =>
        printStatus(place, io.stdout, {
          json: argv.json ?? false,
          ...(columns ? { columns } : {}),
        }),
      );
    },
  };
}
