/**
 * `ravenclaws serve`: hosts every heartbeat of a state dir in this process
 * and serves the HTTP API, the event stream and the dashboard. The URL is the
 * first line on stdout; SIGINT/SIGTERM close the server and the host (every
 * heartbeat persisted) and exit 0.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { UsageError } from "../errors.js";
import type { Served } from "../serve/database.js";
import { databaseOptions } from "../services/pg/connect.js";
import { SETTINGS } from "../settings.js";
import type { RunEnvironment } from "./run.js";
import { type LocationArgs, locationOptions, locationsOf } from "./status.js";

/** Default `--port`. */
export const DEFAULT_PORT = 8470;
/** Default `--host`: this machine only. */
export const DEFAULT_LISTEN_HOST = "127.0.0.1";

/** Options of `serve`. */
export interface ServeArgs extends LocationArgs {
  port?: number;
  host?: string;
  token?: string;
  maxConcurrentTicks?: number;
  baseUrl?: string;
  model?: string;
  apiKey?: string;
  databaseUrl?: string;
  embeddedDb?: string;
  ticks?: boolean;
}

/** Declares `serve`'s options. */
export function serveOptions<T>(yargs: Argv<T>): Argv<T & ServeArgs> {
  return databaseOptions(locationOptions(yargs))
    .option("port", {
      type: "number",
      describe: "TCP port (0 = any free port; the URL printed says which)",
      default: DEFAULT_PORT,
      requiresArg: true,
    })
    .option("host", {
      type: "string",
      describe:
        "Address to listen on; anything but loopback needs --token (one is generated and printed if absent)",
      default: DEFAULT_LISTEN_HOST,
      requiresArg: true,
    })
    .option("token", {
      type: "string",
      describe:
        "Require this token on every request (Authorization: Bearer, or open /?token=… once); also RAVENCLAWS_SERVE_TOKEN",
      requiresArg: true,
    })
    .option("max-concurrent-ticks", {
      type: "number",
      describe: "At most this many heartbeats tick at the same time",
      defaultDescription: "4",
      requiresArg: true,
    })
    .option("base-url", {
      type: "string",
      describe: `${SETTINGS.baseUrl.help}: the default for heartbeats created through serve`,
      requiresArg: true,
    })
    .option("model", {
      type: "string",
      describe: `${SETTINGS.model.help}: the default for heartbeats created through serve`,
      requiresArg: true,
    })
    .option("api-key", {
      type: "string",
      describe: `${SETTINGS.apiKey.help}; used for every hosted heartbeat, never stored with one`,
      requiresArg: true,
    })
    .option("ticks", {
      type: "boolean",
      describe:
        "With a database: also run due ticks in this process (--no-ticks: only show and control; workers run them)",
      default: true,
    }) as unknown as Argv<T & ServeArgs>;
}

function checkPort(port: unknown): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be a whole number from 0 to 65535, not ${String(port)}.`, {
      option: "--port",
      code: "invalid-port",
    });
  }
  return port;
}

/** Runs the server until SIGINT/SIGTERM. */
export async function serveCommandHandler(argv: ServeArgs, io: RunEnvironment): Promise<void> {
  const port = checkPort(argv.port ?? DEFAULT_PORT);
  const listenHost = (argv.host ?? DEFAULT_LISTEN_HOST).trim();
  if (listenHost === "") {
    throw new UsageError("--host must not be empty.", { option: "--host", code: "invalid-host" });
  }
  const maxConcurrentTicks = argv.maxConcurrentTicks;
  if (
    maxConcurrentTicks !== undefined &&
    (!Number.isInteger(maxConcurrentTicks) || maxConcurrentTicks < 1 || maxConcurrentTicks > 1000)
  ) {
    throw new UsageError(
      `--max-concurrent-ticks must be a whole number from 1 to 1000, not ${String(maxConcurrentTicks)}.`,
      { option: "--max-concurrent-ticks", code: "invalid-max-concurrent-ticks" },
    );
  }
  const tokenGiven = argv.token ?? (io.env.RAVENCLAWS_SERVE_TOKEN || undefined);
  if (tokenGiven !== undefined && tokenGiven.length < 16) {
    throw new UsageError("--token must be at least 16 characters long.", {
      option: "--token",
      code: "token-too-short",
      hint: "Leave it out on a non-loopback --host and serve generates a strong one.",
    });
  }

  const [
    { loadTomlConfig, loadUserConfig, resolveRunSettings },
    { createRedactor },
    { isLoopbackHost, generateToken },
    { defaultDashboardDir, packageRoot },
    { startApiServer },
    fs,
    path,
  ] = await Promise.all([
    import("../services/config.js"),
    import("../services/redact.js"),
    import("../serve/security.js"),
    import("../serve/static.js"),
    import("../serve/server.js"),
    import("node:fs/promises"),
    import("node:path"),
  ]);
  const { workdir, stateDir } = await locationsOf(argv, io);
  const { databaseTargetOf } = await import("../services/pg/connect.js");
  const database = databaseTargetOf(argv, io.env);
  if (argv.ticks === false && database === null) {
    throw new UsageError("--no-ticks needs --database-url (or --embedded-db).", {
      option: "--no-ticks",
      code: "no-ticks-without-database",
      hint: "A state dir's heartbeats tick in the serve that hosts them; leave --no-ticks out, or serve a database.",
    });
  }

  // The model endpoint given here is the default of heartbeats created through
  // serve; the API key (flag, environment, toml or user config) is the
  // process's, handed to the host through its environment, never saved.
  const toml = await loadTomlConfig(io.cwd, argv.config, argv.workdir);
  const user = await loadUserConfig(io.env);
  const { settings } = resolveRunSettings({
    flags: { apiKey: argv.apiKey, baseUrl: argv.baseUrl, model: argv.model },
    env: io.env,
    ...(toml ? { toml } : {}),
    ...(user ? { user } : {}),
  });
  const apiKey = settings.apiKey;
  const keyVariable = SETTINGS.apiKey.env[0];
  const env: NodeJS.ProcessEnv = { ...io.env, ...(apiKey ? { [keyVariable]: apiKey } : {}) };
  const defaults: Record<string, unknown> = {};
  if (argv.baseUrl !== undefined) defaults.baseUrl = settings.baseUrl;
  if (argv.model !== undefined) defaults.model = settings.model;

  const loopback = isLoopbackHost(listenHost);
  const token = tokenGiven ?? (loopback ? undefined : generateToken());
  const keysRedacted = createRedactor([
    apiKey,
    ...SETTINGS.apiKey.env.map((name) => io.env[name]),
    token,
  ]);
  const version = await fs
    .readFile(path.join(packageRoot(), "package.json"), "utf8")
    .then((text) => String((JSON.parse(text) as { version?: unknown }).version ?? ""))
    .catch(() => "");

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
  try {
    const served = database
      ? await (await import("../serve/database.js")).serveDatabase(argv, io, {
          workdir,
          env,
          defaults,
          redact: keysRedacted,
          ticks: argv.ticks !== false,
          ...(maxConcurrentTicks !== undefined ? { maxConcurrentTicks } : {}),
        })
      : await serveStateDir({ stateDir, workdir, env, defaults, maxConcurrentTicks });
    const redact = served.redact ?? keysRedacted;
    try {
      const server = await startApiServer({
        host: served.host,
        approvals: served.approvals,
        listenHost,
        port,
        ...(token ? { token } : {}),
        dashboardDir: defaultDashboardDir(),
        redact,
        version,
        log: (line) => io.stderr.write(`${redact(line)}\n`),
      });
      try {
        io.stdout.write(`${server.url}\n`);
        const count = (await served.host.list()).length;
        io.stderr.write(
          `ravenclaws: serving ${count} heartbeat${count === 1 ? "" : "s"} of ${served.where}${served.ticking === false ? " (no ticks here: workers run them)" : ""} at ${server.url}\n`,
        );
        if (token && tokenGiven === undefined) {
          io.stdout.write(`token: ${token}\n`);
          io.stderr.write(
            `ravenclaws: --host ${listenHost} is reachable from other machines, so every request needs the token printed above. Open ${server.url}/?token=${token}\n`,
          );
        } else if (token) {
          io.stderr.write(
            `ravenclaws: every request needs the token: open ${server.url}/?token=<token> once, or send Authorization: Bearer <token>.\n`,
          );
        }
        if (!stopRequested) await stopped;
        io.stderr.write(
          served.ticking === false
            ? "ravenclaws: stopping.\n"
            : "ravenclaws: stopping: saving every heartbeat.\n",
        );
      } finally {
        await server.close();
      }
    } finally {
      await served.close();
    }
  } finally {
    unsubscribe();
  }
}

/** A state dir's host and its approvals (serve without --database-url). */
async function serveStateDir(options: {
  stateDir: string;
  workdir: string;
  env: NodeJS.ProcessEnv;
  defaults: Record<string, unknown>;
  maxConcurrentTicks: number | undefined;
}): Promise<Served> {
  const [{ createHost }, { approvalsPort }] = await Promise.all([
    import("../host/host.js"),
    import("../serve/approvals.js"),
  ]);
  const host = await createHost({
    stateDir: options.stateDir,
    workdir: options.workdir,
    env: options.env,
    defaults: options.defaults,
    ...(options.maxConcurrentTicks !== undefined
      ? { maxConcurrentTicks: options.maxConcurrentTicks }
      : {}),
  });
  try {
    const approvals = await approvalsPort(
      options.stateDir,
      (id) => (host.list().find((s) => s.id === id)?.pendingApprovals ?? 0) > 0,
    );
    return { host, approvals, where: options.stateDir, close: () => host.close() };
  } catch (error) {
    await host.close();
    throw error;
  }
}

/** `serve`'s yargs module, bound to the process it runs in. */
export function serveCommand(environment: () => RunEnvironment) {
  return {
    command: "serve",
    describe:
      "Host every heartbeat of the state dir (or of a database: --database-url) in one process, with an HTTP API and a live dashboard",
    builder: (yargs: Argv) =>
      serveOptions(yargs)
        .example("$0 serve", "on http://127.0.0.1:8470 (open it in a browser)")
        .example(
          "$0 serve --port 0 --base-url http://localhost:11434/v1 --model llama3.2",
          "any free port; heartbeats created through it use a local Ollama",
        )
        .example("$0 serve --host 0.0.0.0", "reachable from other machines, with a generated token")
        .example(
          "RAVENCLAWS_DATABASE_URL=postgres://… $0 serve --no-ticks",
          "the dashboard of a database whose workers run the ticks",
        ),
    handler: (argv: ArgumentsCamelCase<ServeArgs>) => serveCommandHandler(argv, environment()),
  };
}
