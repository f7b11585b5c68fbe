/**
 * Layered configuration: flags > environment > `ravenclaws.toml` > user config
 * (conf) > defaults, merged key by key and validated with one zod schema.
 * Errors name the key, where the value came from, and what was expected.
 */
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { ConfigError } from "../errors.js";
import { type RunSettingKey, type RunSettings, RunSettingsSchema } from "../schemas/config.js";
import { splitList } from "./tools/ruleSyntax.js";

/** `list`: an array of strings, or a comma-separated string (see {@link splitList}). */
type ValueType = "string" | "number" | "boolean" | "list";

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
  /** Lists only: add up the items of every source instead of taking the first (deny rules). */
  merge?: boolean;
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
  toolMode: {
    type: "string",
    env: ["RAVENCLAWS_TOOL_MODE"],
    toml: "tools.mode",
    user: "toolMode",
    flag: "--tool-mode",
  },
  toolDeny: {
    type: "list",
    merge: true,
    env: ["RAVENCLAWS_TOOLS_DENY"],
    toml: "tools.deny",
    user: "toolDeny",
    flag: "--deny",
  },
  toolAsk: {
    type: "list",
    merge: true,
    env: ["RAVENCLAWS_TOOLS_ASK"],
    toml: "tools.ask",
    user: "toolAsk",
    flag: "--ask",
  },
  toolAllow: {
    type: "list",
    env: ["RAVENCLAWS_TOOLS_ALLOW"],
    toml: "tools.allow",
    user: "toolAllow",
    flag: "--allow",
  },
  allowWeb: {
    type: "boolean",
    env: ["RAVENCLAWS_ALLOW_WEB"],
    toml: "tools.allow_web",
    user: "allowWeb",
    flag: "--allow-web",
  },
  allowedHosts: {
    type: "list",
    env: ["RAVENCLAWS_ALLOWED_HOSTS"],
    toml: "tools.allowed_hosts",
    user: "allowedHosts",
    flag: "--allowed-hosts",
  },
  envAllow: {
    type: "list",
    env: ["RAVENCLAWS_ENV_ALLOW"],
    toml: "tools.env_allow",
    user: "envAllow",
    flag: "--env-allow",
  },
  shellTimeout: {
    type: "number",
    env: ["RAVENCLAWS_SHELL_TIMEOUT"],
    toml: "tools.shell_timeout_secs",
    user: "shellTimeout",
    flag: "--shell-timeout",
  },
  sandbox: {
    type: "string",
    env: ["RAVENCLAWS_SANDBOX"],
    toml: "tools.sandbox",
    user: "sandbox",
    flag: "--sandbox",
  },
  shellNetwork: {
    type: "boolean",
    env: ["RAVENCLAWS_SHELL_NETWORK"],
    toml: "tools.shell_network",
    user: "shellNetwork",
    flag: "--shell-network",
  },
  maxTokens: {
    type: "number",
    env: ["RAVENCLAWS_MAX_TOKENS"],
    toml: "heartbeat.max_tokens",
    user: "maxTokens",
    flag: "--max-tokens",
  },
  maxTokensPerTick: {
    type: "number",
    env: ["RAVENCLAWS_MAX_TOKENS_PER_TICK"],
    toml: "heartbeat.max_tokens_per_tick",
    user: "maxTokensPerTick",
    flag: "--max-tokens-per-tick",
  },
  failureBackoff: {
    type: "number",
    env: ["RAVENCLAWS_FAILURE_BACKOFF"],
    toml: "heartbeat.failure_backoff_secs",
    user: "failureBackoff",
    flag: "--failure-backoff",
  },
  cron: { type: "string", env: ["RAVENCLAWS_CRON"], toml: "heartbeat.cron", flag: "--cron" },
  activeHours: {
    type: "string",
    env: ["RAVENCLAWS_ACTIVE_HOURS"],
    toml: "heartbeat.active_hours",
    user: "activeHours",
    flag: "--active-hours",
  },
  timezone: {
    type: "string",
    env: ["RAVENCLAWS_TIMEZONE"],
    toml: "heartbeat.timezone",
    user: "timezone",
    flag: "--timezone",
  },
  priceInput: {
    type: "number",
    env: ["RAVENCLAWS_PRICE_INPUT"],
    toml: "llm.price_input_per_mtok",
    user: "priceInput",
    flag: "--price-input",
  },
  priceOutput: {
    type: "number",
    env: ["RAVENCLAWS_PRICE_OUTPUT"],
    toml: "llm.price_output_per_mtok",
    user: "priceOutput",
    flag: "--price-output",
  },
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
  } else if (type === "list") {
    if (typeof raw === "string") return splitList(raw);
    if (Array.isArray(raw) && raw.every((item) => typeof item === "string")) {
      return raw.flatMap(splitList);
    }
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
    `${source}: must be a ${type === "boolean" ? "boolean (true/false)" : type === "list" ? "list of strings (an array, or comma-separated)" : type}, got ${shown}.`,
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
  /** For merged lists: the source of each item. */
  const itemFrom: Partial<Record<RunSettingKey, string[]>> = {};
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
      if (value === undefined) continue;
      if (spec.merge && Array.isArray(value)) {
        // A rule from any source applies: a flag adds to the file's deny rules, never drops them.
        const list = (merged[key] as string[] | undefined) ?? [];
        const origins = itemFrom[key] ?? [];
        itemFrom[key] = origins;
        for (const item of value as string[]) {
          if (list.includes(item)) continue;
          list.push(item);
          origins.push(source);
        }
        merged[key] = list;
        from[key] = from[key] ? `${from[key]}; ${source}` : source;
        continue;
      }
      merged[key] = value;
      from[key] = source;
      break;
    }
  }
  const parsed = RunSettingsSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? "");
    // A bad item of a list is named with its own source and value.
    const index = issue?.path[1];
    const item = typeof index === "number" && Array.isArray(merged[key]);
    const source =
      (item ? itemFrom[key as RunSettingKey]?.[index as number] : undefined) ??
      from[key as RunSettingKey] ??
      "defaults";
    const value = item ? (merged[key] as unknown[])[index as number] : merged[key];
    const shown = key === "apiKey" ? "(hidden)" : JSON.stringify(value);
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
 * one in `cwd`, else one in the workdir given on the command line or in the
 * environment. Returns undefined when there is none (a missing `--config`
 * file is an error).
 */
export async function loadTomlConfig(
  cwd: string,
  explicit: string | undefined,
  workdir?: string,
): Promise<{ path: string; data: Record<string, unknown> } | undefined> {
  if (!explicit && workdir) {
    const inCwd = await loadTomlConfig(cwd, undefined);
    return inCwd ?? loadTomlConfig(path.resolve(cwd, workdir), undefined);
  }
  const file = explicit ? path.resolve(cwd, explicit) : path.join(cwd, CONFIG_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === "ENOENT" || code === "ENOTDIR") && !explicit) return undefined;
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
export async function importWithoutSignalHooks<T>(load: () => Promise<T>): Promise<T> {
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

/**
 * Opens the user config store (conf; file mode 0600), in
 * `~/.config/ravenclaws` or `RAVENCLAWS_CONFIG_DIR`. Errors are conf's own.
 */
export async function openUserStore(env: NodeJS.ProcessEnv) {
  const { default: Conf } = await importWithoutSignalHooks(() => import("conf"));
  return new Conf<Record<string, unknown>>({
    projectName: "ravenclaws",
    projectSuffix: "",
    ...(env.RAVENCLAWS_CONFIG_DIR ? { cwd: env.RAVENCLAWS_CONFIG_DIR } : {}),
    configFileMode: 0o600,
  });
}

/** Reads the user config store (conf). Its directory can be moved with `RAVENCLAWS_CONFIG_DIR`. */
export async function loadUserConfig(
  env: NodeJS.ProcessEnv,
): Promise<{ path: string; data: Record<string, unknown> } | undefined> {
  const dir = env.RAVENCLAWS_CONFIG_DIR ?? "~/.config/ravenclaws";
  try {
    const store = await openUserStore(env);
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
