/**
 * `ravenclaws run`: start a heartbeat, or resume one with `--id`. Also the
 * Rust original's `ravenclaws --heartbeat …` spelling.
 */
import { randomUUID } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { ArgumentsCamelCase, Argv } from "yargs";
import { HeartbeatFailedError, UsageError } from "../errors.js";
import type { HeartbeatSettings } from "../machines/heartbeat.types.js";
import type { RuntimeEvents } from "../runtime.js";
import type { SavedSettings } from "../schemas/stateFile.js";
import type { Inspection } from "../services/inspection/index.js";
import type { Notifier, NotifyingEvents } from "../services/notify/index.js";
import {
  camelCase,
  defaultTextOf,
  durationSeconds,
  type RunSettingKey,
  type RunSettings,
  SETTINGS,
  type SettingSpec,
  type SettingsTable,
  settingEntries,
} from "../settings.js";

type Camel<S extends string> = S extends `${infer H}-${infer T}`
  ? `${H}${Capitalize<Camel<T>>}`
  : S;
type ArgOf<S> = S extends { type: "boolean" }
  ? boolean
  : S extends { type: "list" }
    ? string[]
    : string;

/** The run options that are settings, as yargs parses them (text, except booleans and lists). */
export type SettingArgs = {
  [K in RunSettingKey as SettingsTable[K] extends { flag: infer F extends string }
    ? Camel<F>
    : never]?: ArgOf<SettingsTable[K]>;
};

/** Options of `run`, as yargs parses them (only those given are set). */
export interface RunArgs extends SettingArgs {
  config?: string;
  inspect?: boolean;
  inspectPort?: number;
  inspectLog?: string;
  open?: boolean;
  recover?: boolean;
  continue?: boolean;
}

/** Declares the settings table's flags (`run`, `create`). */
export function settingOptions<T>(yargs: Argv<T>): Argv<T & SettingArgs> {
  let y = yargs as Argv;
  for (const [, spec] of settingEntries()) {
    if (!spec.flag || !isRunOption(spec)) continue;
    const shownDefault =
      spec.defaultText ??
      (spec.default === undefined || Array.isArray(spec.default) ? undefined : defaultTextOf(spec));
    y = y.option(spec.flag, {
      type: spec.type === "boolean" ? "boolean" : "string",
      ...(spec.type === "list" ? { array: true } : {}),
      ...(spec.aliases ? { alias: [...spec.aliases] } : {}),
      describe: spec.help,
      ...(shownDefault === undefined || (spec.type === "boolean" && shownDefault === "false")
        ? {}
        : { defaultDescription: shownDefault }),
      ...(spec.type === "boolean" || spec.type === "list" ? {} : { requiresArg: true }),
    });
  }
  return y as unknown as Argv<T & SettingArgs>;
}

/** Declares `run`'s options (shared with the legacy `--heartbeat` form): the settings table's flags, then the rest. */
export function runOptions<T>(yargs: Argv<T>): Argv<T & RunArgs> {
  return (settingOptions(yargs) as unknown as Argv)
    .option("inspect", {
      type: "boolean",
      describe: "Watch it live in the Stately inspector (prints the URL to open)",
    })
    .option("inspect-port", {
      type: "number",
      describe: "Port of the inspector server on 127.0.0.1 (0 = any free port); implies --inspect",
      defaultDescription: "8080",
      requiresArg: true,
    })
    .option("inspect-log", {
      type: "string",
      describe: "Append the inspection events to this file (JSON lines; see `inspect replay`)",
      requiresArg: true,
    })
    .option("open", {
      type: "boolean",
      describe: "Open the inspector in the browser; implies --inspect",
    })
    .option("config", {
      type: "string",
      describe: "Path of a ravenclaws.toml",
      defaultDescription: "./ravenclaws.toml if present",
      requiresArg: true,
    })
    .option("continue", {
      type: "boolean",
      describe:
        "With --id: run a heartbeat that ended (completed or failed) again; give --max-ticks above its tick, or a --max-tokens above its usage, when those ended it",
    })
    .option("recover", {
      type: "boolean",
      describe:
        "With --id: move an unusable state file aside (.corrupt-<time>) and resume from its previous version (.prev)",
    }) as unknown as Argv<T & RunArgs>;
}

/** Whether `run` takes the setting's flag (the database settings belong to other commands). */
export function isRunOption(spec: SettingSpec): boolean {
  return !spec.commands || spec.commands.includes("run");
}

/** The flags that were actually given, keyed like the settings. */
export function flagsOf(argv: RunArgs): Partial<Record<RunSettingKey, unknown>> {
  const args = argv as Record<string, unknown>;
  const flags: Partial<Record<RunSettingKey, unknown>> = {};
  for (const [key, spec] of settingEntries()) {
    if (spec.flag) flags[key] = args[camelCase(spec.flag)];
  }
  return flags;
}

/**
 * {@link flagsOf}, with the goal read from `--goal-file` when it is given
 * (relative to `cwd`); both `--goal` and `--goal-file` is a usage error.
 */
export async function runFlags(
  argv: RunArgs,
  cwd: string,
): Promise<Partial<Record<RunSettingKey, unknown>>> {
  const flags = flagsOf(argv);
  if (typeof flags.goalFile !== "string") return flags;
  if (flags.goal !== undefined) {
    throw new UsageError("Give the goal with --goal or with --goal-file, not both.", {
      option: "--goal-file",
    });
  }
  const { readGoalFile } = await import("../services/config.js");
  flags.goal = await readGoalFile(flags.goalFile, cwd);
  flags.goalFile = path.resolve(cwd, flags.goalFile);
  return flags;
}

/** A new heartbeat needs a goal: refuse before inventing an id for one that has none. */
export function requireGoalOrId(settings: Pick<RunSettings, "goal" | "id">): void {
  if (settings.goal !== undefined || settings.id !== undefined) return;
  throw new UsageError("--goal is required to start a heartbeat.", {
    option: "--goal",
    code: "goal-required",
    hint: 'Pass --goal "…" (or --goal-file FILE, or set goal in ravenclaws.toml), or --id ID to resume a heartbeat.',
  });
}

async function requireDirectory(dir: string, option: string): Promise<string> {
  let stat: Awaited<ReturnType<typeof fs.stat>>;
  try {
    stat = await fs.stat(dir);
  } catch {
    throw new UsageError(`${option} ${dir} does not exist.`, {
      option,
      hint: "Create it first, or pass an existing directory.",
    });
  }
  if (!stat.isDirectory()) throw new UsageError(`${option} ${dir} is not a directory.`, { option });
  return fs.realpath(dir);
}

/** A usage error (exit 2) unless this process may create files in `dir`. */
async function requireWritable(dir: string, option: string): Promise<void> {
  try {
    await fs.access(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (error) {
    throw new UsageError(
      `${option} ${dir} is not writable (${(error as NodeJS.ErrnoException).code ?? "no access"}).`,
      { option, code: "not-writable", hint: "Fix its permissions, or pass a writable directory." },
    );
  }
}

/**
 * The workdir (which must exist) and the state dir (`<workdir>/.ravenclaws`
 * unless set) of resolved settings; relative paths are taken from `cwd`.
 * The read commands find heartbeats with it too.
 */
export async function resolveLocations(
  settings: Pick<RunSettings, "workdir" | "stateDir">,
  cwd: string,
): Promise<{ workdir: string; stateDir: string }> {
  const workdir = await requireDirectory(path.resolve(cwd, settings.workdir ?? "."), "--workdir");
  return {
    workdir,
    stateDir: path.resolve(cwd, settings.stateDir ?? path.join(workdir, ".ravenclaws")),
  };
}

/** Where the user config store lives when it could not be opened (conf's default, or `RAVENCLAWS_CONFIG_DIR`). */
function userConfigDirOf(env: NodeJS.ProcessEnv): string {
  if (env.RAVENCLAWS_CONFIG_DIR) return path.resolve(env.RAVENCLAWS_CONFIG_DIR);
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME ?? "/", ".config");
  return path.join(base, "ravenclaws");
}

/** Whether a ravenclaws.toml holds the API key (`[llm] api_key`). */
function holdsApiKey(data: Record<string, unknown>): boolean {
  const llm = data.llm;
  return typeof llm === "object" && llm !== null && "api_key" in llm;
}

/** Hosted endpoints that always need a key: fail before the first tick rather than at it. */
const KEY_REQUIRED_HOSTS = new Set(["api.openai.com", "openrouter.ai"]);

/** Process-level hooks the command needs; tests pass their own. */
export interface RunEnvironment {
  cwd: string;
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Subscribes to SIGINT/SIGTERM; returns an unsubscribe function. */
  onSignal(handler: (signal: NodeJS.Signals) => void): () => void;
  /** Subscribes to wake requests (SIGUSR2, sent by `ravenclaws wake`); returns an unsubscribe function. */
  onWake?(handler: () => void): () => void;
}

/**
 * The settings saved in the state file of the heartbeat `run --id` names, if
 * it exists. With `--recover`, an unusable file's previous version (which
 * the recovery puts back) is read instead.
 */
async function savedSettingsFor(
  argv: RunArgs,
  io: Pick<RunEnvironment, "cwd" | "env">,
): Promise<{ path: string; data: SavedSettings } | undefined> {
  const [{ resolveRunSettings }, { stateDirOf }, { heartbeatPaths, loadStateFile, prevPathOf }] =
    await Promise.all([
      import("../services/config.js"),
      import("./status.js"),
      import("../services/store/index.js"),
    ]);
  const { settings } = resolveRunSettings({
    flags: { id: argv.id },
    env: Object.fromEntries(
      ((SETTINGS.id as SettingSpec).env ?? []).map((name) => [name, io.env[name]]),
    ),
  });
  if (!settings.id) return undefined;
  const { stateFile } = heartbeatPaths(await stateDirOf(argv, io), settings.id);
  try {
    const file = await loadStateFile(stateFile);
    return file ? { path: stateFile, data: file.settings } : undefined;
  } catch (error) {
    if (!argv.recover) throw error;
    const prev = await loadStateFile(prevPathOf(stateFile)).catch(() => null);
    return prev ? { path: stateFile, data: prev.settings } : undefined;
  }
}

/**
 * Runs a heartbeat until it reaches a final state. Resolves on `completed`
 * and `shutdown`; throws {@link HeartbeatFailedError} on `failed`.
 */
export async function runHeartbeatCommand(argv: RunArgs, io: RunEnvironment): Promise<void> {
  const { CONFIG_FILE_NAME, loadTomlConfig, loadUserConfig, resolveRunSettings, savedSettingsOf } =
    await import("../services/config.js");
  const toml = await loadTomlConfig(
    io.cwd,
    argv.config,
    argv.workdir ?? (io.env.RAVENCLAWS_WORKDIR || undefined),
  );
  const user = await loadUserConfig(io.env);
  // A resumed heartbeat starts from the settings saved in its state file, so
  // that file is found first (its id and place come from flags, environment
  // and toml), then every setting is resolved with the saved ones as a layer.
  const saved = await savedSettingsFor(argv, io);
  const { settings, sources } = resolveRunSettings({
    flags: await runFlags(argv, io.cwd),
    env: io.env,
    ...(saved ? { saved } : {}),
    ...(toml ? { toml } : {}),
    ...(user ? { user } : {}),
  });
  requireGoalOrId(settings);
  await checkRunSettings(settings);
  const { workdir, stateDir: stateDirPath } = await resolveLocations(settings, io.cwd);
  // The tools write into the workdir.
  if (settings.tools) await requireWritable(workdir, "--workdir");
  if (argv.recover && !settings.id) {
    throw new UsageError("--recover needs the --id of the heartbeat to recover.", {
      option: "--recover",
      code: "recover-needs-id",
      hint: `List the heartbeats with \`ravenclaws status\` (or ls ${stateDirPath}).`,
    });
  }
  const id = settings.id ?? randomUUID();

  const [
    { createRedactor },
    { FileHeartbeatStore, heartbeatPaths },
    { createOpenAIClient, LlmService },
  ] = await Promise.all([
    import("../services/redact.js"),
    import("../services/store/index.js"),
    import("../services/llm.js"),
  ]);
  const { notifierFromSettings, notifyingEvents, notifyTokenOf } = await import(
    "../services/notify/index.js"
  );
  const notifyToken = notifyTokenOf(settings, io.env);
  const redact = createRedactor([settings.apiKey, notifyToken]);
  const store = new FileHeartbeatStore(heartbeatPaths(stateDirPath, id), { redact });
  await store.ensureDir();
  // Listen before the lock shows this process to `ravenclaws wake`: an early
  // SIGUSR2 is queued instead of killing the process (its default action).
  let wakeQueued = false;
  let onWake = () => {
    wakeQueued = true;
  };
  const unsubscribeWake = io.onWake?.(() => onWake());
  const lock = await store.acquireLock().catch((error: unknown) => {
    unsubscribeWake?.();
    throw error;
  });
  let inspection: Inspection | null = null;
  let notifier: Notifier | null = null;
  try {
    if (argv.recover) io.stderr.write(`ravenclaws: ${(await store.recover()).message}\n`);
    const stateDir = await fs.realpath(stateDirPath);
    const { Reporter } = await import("../services/reporter.js");
    const reporter = new Reporter(io, {
      json: settings.json,
      redact,
      quiet: argv.quiet ?? false,
      env: io.env,
    });

    // Finished means finished: a heartbeat that ended runs again only with --continue.
    const { prepareHeartbeat, resumeVerdict, startHeartbeat } = await import("../runtime.js");
    const verdict = resumeVerdict(await store.load(), settings, {
      continue: argv.continue ?? false,
      goal: settings.goal,
      maxTicksGiven:
        argv.maxTicks !== undefined ||
        ((SETTINGS.maxTicks as SettingSpec).env ?? []).some((name) => Boolean(io.env[name])),
    });
    if (verdict.kind === "finished") {
      const file = verdict.file;
      const further =
        file.reason === "budget"
          ? ` --max-tokens <more than ${file.usage.totalTokens}>`
          : file.reason === "max-ticks" || file.reason === "last-tick-failed"
            ? ` --max-ticks ${file.tick + 1}`
            : "";
      const how = `ravenclaws run --id ${id} --continue${further}`;
      reporter.finished(id, file, file.completed ? null : how);
      if (file.status === "failed") {
        throw new HeartbeatFailedError(
          redact(
            `Heartbeat ${id} failed at tick ${file.tick} (${file.reason ?? "unknown reason"}) on ${file.updatedAt}${file.error ? `: ${file.error.message}` : "."}`,
          ),
          file.reason ?? "failed",
          { hint: `Nothing was run. Once fixed, continue it: ${how}.` },
        );
      }
      return;
    }
    // Running it is starting it: a stop on purpose (which keeps `serve` from hosting it) ends here.
    const hostFiles = await import("../host/files.js");
    if ((await hostFiles.readHostRecord(stateDir, id))?.stopped) {
      await hostFiles.setStopped(stateDir, id, null);
      reporter.note(
        `Heartbeat ${id} was stopped on purpose; running it clears that, so \`ravenclaws serve\` hosts it again.`,
      );
    }

    const llmSettings = {
      baseURL: settings.baseUrl,
      apiKey: settings.apiKey,
      model: settings.model,
      timeoutMs: settings.requestTimeout * 1000,
      maxRetries: settings.maxRetries,
    };
    const llm = new LlmService(createOpenAIClient(llmSettings), llmSettings);
    const configured = settings.tools
      ? await (await import("../services/tools/fromSettings.js")).toolboxFromSettings(settings, {
          workdir,
          stateDir,
          // Every config file a later run would read, whether or not it exists
          // yet: the agent must not write itself looser rules.
          configFiles: [
            toml?.path,
            user?.path,
            argv.config ? path.resolve(io.cwd, argv.config) : undefined,
            path.join(await fs.realpath(io.cwd).catch(() => io.cwd), CONFIG_FILE_NAME),
            path.join(workdir, CONFIG_FILE_NAME),
          ],
          userConfigDir: user ? path.dirname(user.path) : userConfigDirOf(io.env),
          // Shell commands may not even read these: a --config file, or a toml holding the key.
          secretFiles: [
            argv.config ? path.resolve(io.cwd, argv.config) : undefined,
            toml && holdsApiKey(toml.data) ? toml.path : undefined,
          ],
          env: io.env,
          terminal: { stdin: process.stdin, stderr: io.stderr },
          onInterrupt: () => process.kill(process.pid, "SIGINT"),
        })
      : null;

    // Deliveries run beside the heartbeat; a failed one is journaled and shown, never fatal.
    notifier = notifierFromSettings(settings, {
      env: io.env,
      cwd: io.cwd,
      redact,
      apiKey: settings.apiKey,
      token: notifyToken,
      journal: (entry) => store.append([entry]),
      warn: (text) => reporter.note(text),
    });
    const { notifyApprovalNeeded } = await import("../services/approvalWait.js");
    const events = notifier
      ? bothEvents(reporter, notifyingEvents(notifier), notifyApprovalNeeded)
      : reporter;
    const toolbox = configured?.toolbox ?? null;
    if (configured?.notice) reporter.note(configured.notice);
    const { inspectionRequestOf, startInspection } = await import(
      "../services/inspection/index.js"
    );
    const inspectionRequest = inspectionRequestOf(argv, io.cwd);
    if (inspectionRequest) {
      inspection = await startInspection(inspectionRequest, {
        redact,
        note: (text) => reporter.note(text),
      });
    }
    const [
      { readChecklist },
      { checklistFileOf, workspaceObserver },
      { heartbeatSettingsOf, pricesOf },
    ] = await Promise.all([
      import("../services/checklist.js"),
      import("../services/observe.js"),
      import("../host/host.js"),
    ]);
    const prices = pricesOf(settings);
    const heartbeatSettings: HeartbeatSettings = heartbeatSettingsOf(settings);
    const checklistFile = checklistFileOf(workdir, settings.checklist);
    // A checklist named on purpose must exist; none may be a FIFO or a directory (never read blocking).
    const firstChecklist = await readChecklist(checklistFile, settings.checklistMaxBytes).catch(
      (error: unknown) => {
        throw new UsageError(
          `The checklist ${checklistFile} cannot be read: ${error instanceof Error ? error.message : String(error)}.`,
          {
            option: "--checklist",
            code: "checklist-unreadable",
            hint: "Point --checklist at a regular file, or remove what is in the way of HEARTBEAT.md.",
          },
        );
      },
    );
    if (!firstChecklist && settings.checklist) {
      throw new UsageError(`The checklist ${checklistFile} does not exist.`, {
        option: "--checklist",
        code: "checklist-missing",
        hint: "Create it, or drop --checklist to use HEARTBEAT.md in the workdir when there is one.",
      });
    }
    const running = await prepareHeartbeat(
      { id, goal: settings.goal, settings: heartbeatSettings },
      {
        llm,
        store,
        toolbox,
        events,
        inspect: inspection?.inspect,
        prices,
        observe: workspaceObserver({
          workdir,
          stateDir,
          checklistFile,
          checklistMaxBytes: settings.checklistMaxBytes,
        }),
        savedSettings: savedSettingsOf(settings),
        approvals: {
          timeoutSec: settings.askTimeout ? durationSeconds(settings.askTimeout) : null,
          fallback: settings.askFallback === "allow" ? "allow" : "deny",
          ask: configured?.ask,
        },
      },
    );

    const context = running.actor.getSnapshot().context;
    // What this run changes in the saved settings (printed under the banner),
    // whether it continues a heartbeat that had ended, and how shell_exec is
    // confined in it and why (`show` prints the latest). Journaled before the
    // banner: the banner tells callers the signal handlers are in place, so no
    // await comes between the two.
    const { describeChange, settingChanges } = await import("../services/settingChanges.js");
    const changes = running.previous
      ? settingChanges(
          running.previous.settings,
          savedSettingsOf(settings),
          sources,
          (key) => `--${(SETTINGS[key] as SettingSpec).flag ?? key}`,
        )
      : [];
    await store.append([
      {
        type: "run",
        at: new Date().toISOString(),
        resumed: running.resumed,
        tick: context.tick,
        changes: changes.map(({ setting, from, to, source }) => ({ setting, from, to, source })),
        ...(verdict.kind === "continue"
          ? {
              continued: {
                status: verdict.file.status,
                reason: verdict.file.reason,
                tick: verdict.file.tick,
                at: verdict.file.updatedAt,
              },
            }
          : {}),
        shell: configured?.shell ?? {
          mode: settings.sandbox,
          sandbox: "none",
          offered: false,
          network: false,
          reason: "tools are off (--no-tools)",
        },
      },
    ]);
    reporter.start({
      id,
      goal: context.goal,
      resumed: running.resumed,
      tick: context.tick,
      stateFile: store.paths.stateFile,
      model: settings.model,
    });
    if (verdict.kind === "continue") {
      const { status, reason, tick } = verdict.file;
      reporter.note(
        `ravenclaws: continuing heartbeat ${id}, which ended ${status}${reason ? ` (${reason})` : ""} at tick ${tick}.`,
      );
    }
    for (const change of changes) reporter.note(`ravenclaws: ${describeChange(change)}`);

    const unsubscribe = io.onSignal((signal) => {
      reporter.note(
        `ravenclaws: ${signal} received: stopping and saving state (send it again to exit at once).`,
      );
      running.stop();
    });
    // Lost the lock (taken over, or its file removed): stop now; the store refuses the final write, so it ends in failed.
    const unsubscribeLock = lock.onCompromised(() => running.stop());
    onWake = () => {
      reporter.note("ravenclaws: wake requested: starting the next tick now.");
      running.wake();
    };
    try {
      startHeartbeat(running);
      if (wakeQueued) onWake();
      const snapshot = running.actor.getSnapshot();
      if (snapshot.status === "error") {
        throw snapshot.error;
      }
      const output = await running.done;
      reporter.end(output, store.paths.stateFile);
      if (output.status === "failed") {
        const hint =
          output.error?.hint ??
          (output.reason === "too-many-failures"
            ? `The last ${heartbeatSettings.maxConsecutiveFailures} ticks failed in a row; see ${store.paths.journal}.`
            : output.reason === "last-tick-failed"
              ? `Its errors are in ${store.paths.journal}.`
              : `See ${store.paths.journal}.`);
        // The message may echo a server's error text: redact it like everything else printed.
        throw new HeartbeatFailedError(
          redact(
            output.error
              ? `Heartbeat ${id} failed: ${output.error.message}`
              : output.reason === "last-tick-failed"
                ? `Heartbeat ${id} failed: it reached its last tick (${output.tick}), and that tick failed.`
                : `Heartbeat ${id} failed: ${output.reason ?? "unknown reason"}.`,
          ),
          output.reason ?? "failed",
          { hint: redact(`${hint} Once fixed, continue it with --id ${id} --continue.`) },
        );
      }
    } finally {
      unsubscribe();
      unsubscribeLock();
      // The browser never outlives the run.
      await toolbox?.close();
      reporter.close();
    }
  } finally {
    unsubscribeWake?.();
    await inspection?.close();
    // A completed or failed event gets a bounded time to leave before the process ends.
    await notifier?.close();
    await lock.release();
  }
}

/**
 * The checks of settings that a heartbeat cannot run with, before anything
 * is written: a key for endpoints that always need one, prices for a cost
 * cap, a valid cron expression. Throws `UsageError` (exit 2).
 */
export async function checkRunSettings(settings: RunSettings): Promise<void> {
  if (!settings.apiKey && KEY_REQUIRED_HOSTS.has(new URL(settings.baseUrl).hostname)) {
    throw new UsageError(`No API key for ${settings.baseUrl}.`, {
      option: "--api-key",
      code: "api-key-required",
      hint: "Set OPENAI_API_KEY (or pass --api-key), or point --base-url at a local server such as http://localhost:11434/v1.",
    });
  }
  if (
    settings.maxCostPerDay > 0 &&
    settings.priceInput === undefined &&
    settings.priceOutput === undefined &&
    settings.priceCachedInput === undefined
  ) {
    throw new UsageError(
      `--max-cost-per-day ${settings.maxCostPerDay} needs prices to count the cost.`,
      {
        option: "--max-cost-per-day",
        code: "cost-cap-needs-prices",
        hint: "Add --price-input and --price-output (US dollars per million tokens), or use --max-tokens-per-day.",
      },
    );
  }
  if (settings.cron) {
    const { validateCron } = await import("../services/schedule.js");
    validateCron(settings.cron, settings.timezone ?? null);
  }
}

/** The reporter's events, and the notifier's after them. */
function bothEvents(
  reporter: RuntimeEvents,
  notifying: NotifyingEvents,
  notifyApprovalNeeded: typeof import("../services/approvalWait.js").notifyApprovalNeeded,
): RuntimeEvents {
  return {
    state: (state, context) => reporter.state?.(state, context),
    tool: (record, tick) => reporter.tool?.(record, tick),
    toolLoopState: (path) => reporter.toolLoopState?.(path),
    approvalNeeded: (pending, tick, again, heartbeat) => {
      reporter.approvalNeeded?.(pending, tick, again, heartbeat);
      notifyApprovalNeeded(notifying, pending, tick, again, heartbeat);
    },
    approvalDecided: (decision, call) => reporter.approvalDecided?.(decision, call),
    persisted: (file, entries) => {
      reporter.persisted?.(file, entries);
      notifying.persisted(file, entries);
    },
  };
}

/** `run`'s yargs module, bound to the process it runs in. */
export function runCommand(environment: () => RunEnvironment) {
  return {
    command: "run",
    describe: "Start a heartbeat, or resume one with --id",
    builder: (yargs: Argv) =>
      runOptions(yargs)
        .example(
          '$0 run --goal "Keep NOTES.md summarising the TODOs in this repo"',
          "start a heartbeat",
        )
        .example("$0 run --id my-heartbeat --max-ticks 10", "resume a heartbeat, up to tick 10")
        .example(
          '$0 run --goal "…" --base-url http://localhost:11434/v1 --model llama3.2',
          "against a local Ollama server",
        ),
    handler: (argv: ArgumentsCamelCase<RunArgs>) => runHeartbeatCommand(argv, environment()),
  };
}
