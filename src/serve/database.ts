/**
 * `serve --database-url`: what the HTTP server serves when the heartbeats are
 * in PostgreSQL. The database host (`host/dbHost.ts`) over the shared
 * modules: the tick queue for wake/stop/start, the create path `create`
 * and `worker` use, the decisions table for approve/deny, and, unless
 * `--no-ticks`, a worker in this process (`startWorker`) that runs due ticks
 * like any `ravenclaws worker`.
 */
import type { ServedHost } from "../host/types.js";
import type { DatabaseArgs } from "../services/pg/connect.js";
import type { Redactor } from "../services/redact.js";
import type { RunningWorker } from "../worker/types.js";
import type { ApprovalsPort } from "./server.js";

/** What `serve` serves: a host, its approvals, and how to close both. */
export interface Served {
  host: ServedHost;
  approvals?: ApprovalsPort;
  /** Where the heartbeats are, for messages (a state dir, or the URL with its password redacted). */
  where: string;
  /** The redactor of every response and log line, when it holds more than serve's own secrets. */
  redact?: Redactor;
  /** False when this process runs no ticks (`--no-ticks`). */
  ticking?: boolean;
  /** Closes the host (ticks saved) and what it holds. */
  close(): Promise<void>;
}

/** Options of {@link serveDatabase}. */
export interface ServeDatabaseOptions {
  /** Default workdir of heartbeats created through the API. */
  workdir: string;
  /** The process environment, with the API key of serve. */
  env: NodeJS.ProcessEnv;
  /** serve's `--base-url`, `--model`: defaults of heartbeats created through it. */
  defaults: Record<string, unknown>;
  /** serve's secrets (the API key, the token); the URL's password is added. */
  redact: Redactor;
  /** Run due ticks in this process (false: `--no-ticks`). */
  ticks: boolean;
  /** At most this many ticks at a time in this process. */
  maxConcurrentTicks?: number;
}

/** Setting values as the command line gives them (numbers as text), so they are checked like flags. */
function asFlags(values: Record<string, unknown>): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    flags[key] = typeof value === "number" ? String(value) : value;
  }
  return flags;
}

/**
 * Opens the database `--database-url` / `--embedded-db` name (migrated as
 * `worker` migrates it), starts a worker in this process unless `ticks` is
 * false, and returns the database host with its approvals. The URL's
 * password joins the redactor.
 */
export async function serveDatabase(
  argv: DatabaseArgs,
  io: { cwd: string; env: NodeJS.ProcessEnv },
  options: ServeDatabaseOptions,
): Promise<Served> {
  const [{ randomUUID }, path, { databaseFromArgs }, queue, { createDbHost }] = await Promise.all([
    import("node:crypto"),
    import("node:path"),
    import("../services/pg/connect.js"),
    import("../services/pg/queue.js"),
    import("../host/dbHost.js"),
  ]);
  const db = await databaseFromArgs(argv, io, { redact: options.redact, schema: "migrate" });
  if (!db) throw new Error("serveDatabase: no database was given.");
  let ticks: RunningWorker | null = null;
  try {
    const [{ HeartbeatWiring }, { checkWorkdir, createInDatabase }] = await Promise.all([
      import("../host/wiring.js"),
      import("../worker/create.js"),
    ]);
    // Settings of heartbeats created here resolve as `create` resolves them.
    const wiring = new HeartbeatWiring({ env: options.env, stateDir: (workdir) => workdir });
    if (options.ticks) {
      const { startWorker } = await import("../worker/worker.js");
      ticks = await startWorker({
        db,
        env: options.env,
        migrate: false,
        ...(options.maxConcurrentTicks !== undefined
          ? { concurrency: options.maxConcurrentTicks }
          : {}),
      });
    }
    const host = await createDbHost(
      { db, where: db.url, ticks },
      {
        async create(request) {
          const goal = request.goal.trim();
          const id = request.id ?? randomUUID();
          const settings = await wiring.resolve(
            asFlags({ ...options.defaults, ...request.settings, goal, id }),
          );
          const workdir = await checkWorkdir(
            path.resolve(options.workdir, request.workdir ?? "."),
            settings.tools,
          );
          const created = await createInDatabase(db, { id, goal, workdir, settings });
          return created.id;
        },
        wake: (id) => queue.wakeHeartbeat(db, id),
        stop: (id) => queue.stopHeartbeat(db, id),
        start: (id) => queue.startHeartbeat(db, id),
      },
    );
    // Decisions go to the decisions table, where the worker running the tick reads them.
    const [{ approvalsPort }, { databasePlace }] = await Promise.all([
      import("./approvals.js"),
      import("../services/pg/place.js"),
    ]);
    const approvals = await approvalsPort(
      databasePlace(db),
      async (id) => ((await host.summary(id))?.pendingApprovals ?? 0) > 0,
    );
    return {
      host,
      approvals,
      where: db.url,
      redact: db.redact,
      ticking: options.ticks,
      async close() {
        await host.close();
        await wiring.close();
        await db.close();
      },
    };
  } catch (error) {
    await ticks?.stop().catch(() => {});
    await db.close().catch(() => {});
    throw error;
  }
}
