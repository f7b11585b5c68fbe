/**
 * Layered configuration: flags > environment > `ravenclaws.toml` > user config
 * (conf) > defaults, merged key by key and validated with one zod schema.
 * Errors name the key, where the value came from, and what was expected.
 */
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { ConfigError } from "../errors.js";
import { type RunSettingKey, type RunSettings, RunSettingsSchema } from "../schemas/config.js";

type ValueType = "string" | "number" | "boolean";

interface KeySpec {
  type: ValueType;
  /** Environment variables, highest precedence first. */
  env: string[];
  /** `section.key` in ravenclaws.toml. */
  toml?: string;
  /** Key in the user config store. */
  user?: string;
  /** The flag, for messages. */
  flag: string;
}

/** Where each setting may come from. */
export const KEYS: Record<RunSettingKey, KeySpec> = {
  goal: {
    type: "string",
    env: ["RAVENCLAWS_HEARTBEAT_GOAL", "RAVENCLAWS_GOAL"],
    toml: "heartbeat.goal",
    flag: "--goal",
  },
  id: { type: "string", env: ["RAVENCLAWS_HEARTBEAT_SESSION", "RAVENCLAWS_ID"], flag: "--id" },
  tickInterval: {
    type: "number",
    env: ["RAVENCLAWS_HEARTBEAT_TICK_INTERVAL", "RAVENCLAWS_TICK_INTERVAL"],
    toml: "heartbeat.tick_interval_secs",
    user: "tickInterval",
    flag: "--tick-interval",
  },
  maxTicks: {
    type: "number",
    env: ["RAVENCLAWS_HEARTBEAT_MAX_TICKS", "RAVENCLAWS_MAX_TICKS"],
    toml: "heartbeat.max_ticks",
    user: "maxTicks",
    flag: "--max-ticks",
  },
  maxIterationsPerTick: {
    type: "number",
    env: ["RAVENCLAWS_MAX_ITERATIONS_PER_TICK"],
    toml: "heartbeat.max_iterations_per_tick",
    user: "maxIterationsPerTick",
    flag: "--max-iterations-per-tick",
  },
  maxConsecutiveFailures: {
    type: "number",
    env: ["RAVENCLAWS_MAX_CONSECUTIVE_FAILURES"],
    toml: "heartbeat.max_consecutive_failures",
    user: "maxConsecutiveFailures",
    flag: "--max-consecutive-failures",
  },
  tools: {
    type: "boolean",
    env: ["RAVENCLAWS_TOOLS"],
    toml: "heartbeat.enable_tools",
    user: "tools",
    flag: "--tools",
  },
  workdir: {
    type: "string",
    env: ["RAVENCLAWS_WORKDIR"],
    toml: "heartbeat.workdir",
    flag: "--workdir",
  },
  stateDir: {
    type: "string",
    env: ["RAVENCLAWS_STATE_DIR"],
    toml: "heartbeat.state_dir",
    flag: "--state-dir",
  },
  model: {
    type: "string",
    env: ["RAVENCLAWS_MODEL"],
    toml: "llm.model",
    user: "model",
    flag: "--model",
  },
  baseUrl: {
    type: "string",
    env: ["RAVENCLAWS_BASE_URL", "OPENAI_BASE_URL"],
    toml: "llm.base_url",
    user: "baseUrl",
    flag: "--base-url",
  },
  apiKey: {
    type: "string",
    env: ["RAVENCLAWS_API_KEY", "OPENAI_API_KEY"],
    toml: "llm.api_key",
    user: "apiKey",
    flag: "--api-key",
  },
  requestTimeout: {
    type: "number",
    env: ["RAVENCLAWS_REQUEST_TIMEOUT"],
    toml: "llm.request_timeout_secs",
    user: "requestTimeout",
    flag: "--request-timeout",
  },
  maxRetries: {
    type: "number",
    env: ["RAVENCLAWS_MAX_RETRIES"],
    toml: "llm.max_retries",
    user: "maxRetries",
    flag: "--max-retries",
  },
  json: { type: "boolean", env: [], flag: "--json" },
};

/** Name of the project config file. */
export const CONFIG_FILE_NAME = "ravenclaws.toml";

/** Inputs to {@link resolveRunSettings}. */
export interface ConfigSources {
  /** Values given on the command line (only those actually given). */
  flags: Partial<Record<RunSettingKey, unknown>>;
  env: NodeJS.ProcessEnv;
  /** Parsed `ravenclaws.toml` and its path, if one was found. */
  toml?: { path: string; data: Record<string, unknown> };
  /** The user config store's contents and its path. */
  user?: { path: string; data: Record<string, unknown> };
}

/** The merged settings and where each value came from. */
export interface ResolvedSettings {
  settings: RunSettings;
  sources: Partial<Record<RunSettingKey, string>>;
}

function coerce(
  raw: unknown,
  type: ValueType,
  key: string,
  source: string,
  secret = false,
): unknown {
  if (raw === undefined || raw === null) return undefined;
  if (type === "string") {
    if (typeof raw === "string") return raw;
    if (typeof raw === "number") return String(raw);
  } else if (type === "number") {
    if (typeof raw === "number" && Number.isFinite(raw)) return raw;
    if (typeof raw === "string" && raw.trim() !== "" && Number.isFinite(Number(raw)))
      return Number(raw);
  } else {
    if (typeof raw === "boolean") return raw;
    if (typeof raw === "string") {
      const v = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(v)) return true;
      if (["0", "false", "no", "off"].includes(v)) return false;
    }
  }
  const shown = secret ? "a value of another type (hidden)" : JSON.stringify(raw);
  throw new ConfigError(
    `${source}: must be a ${type === "boolean" ? "boolean (true/false)" : type}, got ${shown}.`,
    key,
    source,
  );
}

function tomlValue(data: Record<string, unknown>, dotted: string): unknown {
  let node: unknown = data;
  for (const part of dotted.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** Merges the sources key by key and validates the result. */
export function resolveRunSettings(sources: ConfigSources): ResolvedSettings {
  const merged: Record<string, unknown> = {};
  const from: Partial<Record<RunSettingKey, string>> = {};
  for (const [key, spec] of Object.entries(KEYS) as [RunSettingKey, KeySpec][]) {
    const candidates: [unknown, string, string][] = [];
    candidates.push([sources.flags[key], `option ${spec.flag}`, spec.flag]);
    for (const name of spec.env)
      candidates.push([
        sources.env[name] === "" ? undefined : sources.env[name],
        `environment variable ${name}`,
        name,
      ]);
    if (spec.toml && sources.toml) {
      candidates.push([
        tomlValue(sources.toml.data, spec.toml),
        `${sources.toml.path} [${spec.toml.split(".")[0]}] ${spec.toml.split(".")[1]}`,
        spec.toml,
      ]);
    }
    if (spec.user && sources.user) {
      candidates.push([
        sources.user.data[spec.user],
        `user config ${sources.user.path} (${spec.user})`,
        spec.user,
      ]);
    }
    for (const [raw, source, name] of candidates) {
      const value = coerce(raw, spec.type, name, source, key === "apiKey");
      if (value !== undefined) {
        merged[key] = value;
        from[key] = source;
        break;
      }
    }
  }
  const parsed = RunSettingsSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? "");
    const source = from[key as RunSettingKey] ?? "defaults";
    const shown = key === "apiKey" ? "(hidden)" : JSON.stringify(merged[key]);
    throw new ConfigError(
      `${source}: ${issue?.message ?? "is invalid"} (got ${shown}).`,
      key,
      source,
    );
  }
  return { settings: parsed.data, sources: from };
}

/**
 * Finds and parses `ravenclaws.toml`: the file given with `--config`, else
 * one in `cwd`. Returns undefined when there is none (a missing `--config`
 * file is an error).
 */
export async function loadTomlConfig(
  cwd: string,
  explicit: string | undefined,
): Promise<{ path: string; data: Record<string, unknown> } | undefined> {
  const file = explicit ? path.resolve(cwd, explicit) : path.join(cwd, CONFIG_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && !explicit) return undefined;
    throw new ConfigError(
      `Cannot read the config file ${file}: ${(error as Error).message}`,
      "--config",
      file,
    );
  }
  const { parse } = await import("smol-toml");
  try {
    return { path: file, data: parse(text) as Record<string, unknown> };
  } catch (error) {
    throw new ConfigError(
      `The config file ${file} is not valid TOML: ${(error as Error).message}`,
      "(file)",
      file,
      {
        hint: "Fix the syntax; see the README's configuration section.",
      },
    );
  }
}

const HOOKED_SIGNALS: NodeJS.Signals[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR2",
  "SIGBREAK" as NodeJS.Signals,
];

/**
 * Imports a module and removes the signal listeners it installs on import.
 * conf's writer (atomically, via when-exit) hooks every signal and re-raises
 * it, which would turn one SIGTERM into two; the heartbeat handles signals itself.
 */
async function importWithoutSignalHooks<T>(load: () => Promise<T>): Promise<T> {
  const before = new Map(HOOKED_SIGNALS.map((s) => [s, new Set(safeListeners(s))]));
  const module = await load();
  for (const signal of HOOKED_SIGNALS) {
    for (const listener of safeListeners(signal)) {
      if (!before.get(signal)?.has(listener)) process.off(signal, listener);
    }
  }
  return module;
}

type Listener = (...args: unknown[]) => void;

function safeListeners(signal: NodeJS.Signals): Listener[] {
  try {
    return process.listeners(signal) as Listener[];
  } catch {
    return [];
  }
}

/** Reads the user config store (conf). Its directory can be moved with `RAVENCLAWS_CONFIG_DIR`. */
export async function loadUserConfig(
  env: NodeJS.ProcessEnv,
): Promise<{ path: string; data: Record<string, unknown> } | undefined> {
  const { default: Conf } = await importWithoutSignalHooks(() => import("conf"));
  const dir = env.RAVENCLAWS_CONFIG_DIR ?? "~/.config/ravenclaws";
  let store: InstanceType<typeof Conf<Record<string, unknown>>>;
  try {
    store = new Conf<Record<string, unknown>>({
      projectName: "ravenclaws",
      projectSuffix: "",
      ...(env.RAVENCLAWS_CONFIG_DIR ? { cwd: env.RAVENCLAWS_CONFIG_DIR } : {}),
      configFileMode: 0o600,
    });
    return { path: store.path, data: { ...store.store } };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // A home directory we may not write to just means there is no user config.
    if (code === "EACCES" || code === "EROFS" || code === "EPERM") return undefined;
    throw new ConfigError(
      `Cannot read the user config in ${dir}: ${(error as Error).message}`,
      "(user config)",
      dir,
      { hint: `Fix or delete ${dir}/config.json.` },
    );
  }
}
