/**
 * `ravenclaws run`: start a heartbeat, or resume one with `--id`. Also the
 * Rust original's `ravenclaws --heartbeat …` spelling.
 */
import { randomUUID } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { ArgumentsCamelCase, Argv } from "yargs";
import { HeartbeatFailedError, UsageError } from "../errors.js";
import type { HeartbeatSettings } from "../machines/heartbeat.types.js";
import type { RunSettings } from "../schemas/config.js";

/** Options of `run`, as yargs parses them (only those given are set). */
export interface RunArgs {
  goal?: string;
  id?: string;
  tickInterval?: string;
  maxTicks?: string;
  maxIterationsPerTick?: string;
  maxConsecutiveFailures?: string;
  workdir?: string;
  stateDir?: string;
  tools?: boolean;
  model?: string;
  baseUrl?: string;
  apiKey?: string;
  requestTimeout?: string;
  maxRetries?: string;
  json?: boolean;
  config?: string;
}

/** Declares `run`'s options (shared with the legacy `--heartbeat` form). */
export function runOptions<T>(yargs: Argv<T>): Argv<T & RunArgs> {
  return yargs
    .option("goal", {
      type: "string",
      alias: "heartbeat-goal",
      describe: "The mission (required for a new heartbeat)",
      requiresArg: true,
    })
    .option("id", {
      type: "string",
      alias: "heartbeat-session",
      describe: "Heartbeat id; an existing id resumes it",
      defaultDescription: "a new UUID",
      requiresArg: true,
    })
    .option("tick-interval", {
      type: "string",
      alias: "heartbeat-tick-interval",
      describe: "Seconds between ticks; 0 = back to back",
      defaultDescription: "300",
      requiresArg: true,
    })
    .option("max-ticks", {
      type: "string",
      alias: "heartbeat-max-ticks",
      describe: "Stop (completed) after this many ticks; 0 = unlimited",
      defaultDescription: "0",
      requiresArg: true,
    })
    .option("max-iterations-per-tick", {
      type: "string",
      describe: "Model calls allowed in one execute phase",
      defaultDescription: "5",
      requiresArg: true,
    })
    .option("max-consecutive-failures", {
      type: "string",
      describe: "End in failed after this many failed ticks in a row",
      defaultDescription: "5",
      requiresArg: true,
    })
    .option("workdir", {
      type: "string",
      describe: "The workspace the tools act in",
      defaultDescription: "current directory",
      requiresArg: true,
    })
    .option("state-dir", {
      type: "string",
      describe: "Where state, journal and lock live",
      defaultDescription: "<workdir>/.ravenclaws",
      requiresArg: true,
    })
    .option("tools", {
      type: "boolean",
      describe: "Tool calling in the execute phase (--no-tools: the plan is the result)",
      defaultDescription: "true",
    })
    .option("model", {
      type: "string",
      describe: "Model name",
      defaultDescription: "$RAVENCLAWS_MODEL or gpt-4o-mini",
      requiresArg: true,
    })
    .option("base-url", {
      type: "string",
      describe:
        "OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, LM Studio, llama.cpp, OpenRouter)",
      defaultDescription: "$OPENAI_BASE_URL or https://api.openai.com/v1",
      requiresArg: true,
    })
    .option("api-key", {
      type: "string",
      describe: "API key (prefer the environment: it shows in no process list)",
      defaultDescription: "$OPENAI_API_KEY",
      requiresArg: true,
    })
    .option("request-timeout", {
      type: "string",
      describe: "Seconds before a model request times out",
      defaultDescription: "120",
      requiresArg: true,
    })
    .option("max-retries", {
      type: "string",
      describe: "Retries of a failed model request (connection errors, 429, 5xx)",
      defaultDescription: "2",
      requiresArg: true,
    })
    .option("json", {
      type: "boolean",
      describe: "Machine-readable events on stdout, one JSON object per line",
    })
    .option("config", {
      type: "string",
      describe: "Path of a ravenclaws.toml",
      defaultDescription: "./ravenclaws.toml if present",
      requiresArg: true,
    }) as unknown as Argv<T & RunArgs>;
}

/** The flags that were actually given, keyed like the settings. */
export function flagsOf(argv: RunArgs): Partial<Record<keyof RunSettings, unknown>> {
  return {
    goal: argv.goal,
    id: argv.id,
    tickInterval: argv.tickInterval,
    maxTicks: argv.maxTicks,
    maxIterationsPerTick: argv.maxIterationsPerTick,
    maxConsecutiveFailures: argv.maxConsecutiveFailures,
    tools: argv.tools,
    workdir: argv.workdir,
    stateDir: argv.stateDir,
    model: argv.model,
    baseUrl: argv.baseUrl,
    apiKey: argv.apiKey,
    requestTimeout: argv.requestTimeout,
    maxRetries: argv.maxRetries,
    json: argv.json,
  };
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
}

/**
 * Runs a heartbeat until it reaches a final state. Resolves on `completed`
 * and `shutdown`; throws {@link HeartbeatFailedError} on `failed`.
 */
export async function runHeartbeatCommand(argv: RunArgs, io: RunEnvironment): Promise<void> {
  const { loadTomlConfig, loadUserConfig, resolveRunSettings } = await import(
    "../services/config.js"
  );
  const toml = await loadTomlConfig(io.cwd, argv.config);
  const user = await loadUserConfig(io.env);
  const { settings } = resolveRunSettings({
    flags: flagsOf(argv),
    env: io.env,
    ...(toml ? { toml } : {}),
    ...(user ? { user } : {}),
  });

  if (!settings.apiKey && KEY_REQUIRED_HOSTS.has(new URL(settings.baseUrl).hostname)) {
    throw new UsageError(`No API key for ${settings.baseUrl}.`, {
      option: "--api-key",
      code: "api-key-required",
      hint: "Set OPENAI_API_KEY (or pass --api-key), or point --base-url at a local server such as http://localhost:11434/v1.",
    });
  }
  const workdir = await requireDirectory(
    path.resolve(io.cwd, settings.workdir ?? "."),
    "--workdir",
  );
  const stateDirPath = path.resolve(io.cwd, settings.stateDir ?? path.join(workdir, ".ravenclaws"));
  const id = settings.id ?? randomUUID();

  const [
    { createRedactor },
    { acquireLock, HeartbeatStore, heartbeatPaths },
    { createOpenAIClient, LlmService },
  ] = await Promise.all([
    import("../services/redact.js"),
    import("../services/store.js"),
    import("../services/llm.js"),
  ]);
  const redact = createRedactor([settings.apiKey]);
  const store = new HeartbeatStore(heartbeatPaths(stateDirPath, id), { redact });
  await store.ensureDir();
  const lock = await acquireLock(store.paths.lock);
  try {
    const stateDir = await fs.realpath(stateDirPath);

    const llmSettings = {
      baseURL: settings.baseUrl,
      apiKey: settings.apiKey,
      model: settings.model,
      timeoutMs: settings.requestTimeout * 1000,
      maxRetries: settings.maxRetries,
    };
    const llm = new LlmService(createOpenAIClient(llmSettings), llmSettings);
    const toolbox = settings.tools
      ? (await import("../services/tools/index.js")).createToolbox({ workdir, stateDir })
      : null;

    const { Reporter } = await import("../services/reporter.js");
    const reporter = new Reporter(io, { json: settings.json, redact });
    const { prepareHeartbeat, startHeartbeat } = await import("../runtime.js");
    const heartbeatSettings: HeartbeatSettings = {
      maxTicks: settings.maxTicks,
      tickIntervalSec: settings.tickInterval,
      maxIterationsPerTick: settings.maxIterationsPerTick,
      toolsEnabled: settings.tools,
      maxConsecutiveFailures: settings.maxConsecutiveFailures,
    };
    const running = await prepareHeartbeat(
      { id, goal: settings.goal, settings: heartbeatSettings },
      { llm, store, toolbox, events: reporter },
    );

    if (running.previous?.completed) {
      reporter.note(
        `ravenclaws: heartbeat ${id} already met its goal at tick ${running.previous.tick}; nothing to do.`,
      );
      reporter.end(
        {
          status: "completed",
          reason: "goal-met",
          tick: running.previous.tick,
          completed: true,
          usage: running.previous.usage,
          progress: running.previous.progress,
          error: null,
        },
        store.paths.stateFile,
      );
      return;
    }

    const context = running.actor.getSnapshot().context;
    reporter.start({
      id,
      goal: context.goal,
      resumed: running.resumed,
      tick: context.tick,
      stateFile: store.paths.stateFile,
      model: settings.model,
    });

    const unsubscribe = io.onSignal((signal) => {
      reporter.note(
        `ravenclaws: ${signal} received: stopping and saving state (send it again to exit at once).`,
      );
      running.stop();
    });
    try {
      startHeartbeat(running);
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
            : `See ${store.paths.journal}.`);
        // The message may echo a server's error text: redact it like everything else printed.
        throw new HeartbeatFailedError(
          redact(
            output.error
              ? `Heartbeat ${id} failed: ${output.error.message}`
              : `Heartbeat ${id} failed: ${output.reason ?? "unknown reason"}.`,
          ),
          output.reason ?? "failed",
          { hint: redact(`${hint} Resume with --id ${id} once fixed.`) },
        );
      }
    } finally {
      unsubscribe();
    }
  } finally {
    await lock.release();
  }
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
