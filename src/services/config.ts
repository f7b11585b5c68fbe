/**
 * Layered configuration: flags > environment > the settings saved in a
 * resumed heartbeat's state file > `ravenclaws.toml` > user config (conf) >
 * defaults, merged key by key through the settings table (`src/settings.ts`)
 * and validated with the schema built from it. Errors
 * name the key, where the value came from, and what was expected. Text from
 * flags and the environment is converted to the setting's type; values in
 * the config files must already have it.
 */
import { open as openFile } from "node:fs/promises";
import * as path from "node:path";
import { ConfigError, UsageError } from "../errors.js";
import { RunSettingsSchema } from "../schemas/config.js";
import {
  GOAL_FILE_MAX_BYTES,
  GOAL_MAX_BYTES,
  heartbeatSettingKeys,
  type RunSettingKey,
  type RunSettings,
  SETTINGS,
  type SettingSpec,
  settingEntries,
  tomlSections,
  userKeys,
} from "../settings.js";
import { readRegularFile } from "./regularFile.js";
import { didYouMean } from "./suggest.js";
import { splitList } from "./tools/ruleSyntax.js";

/** Name of the project config file. */
export const CONFIG_FILE_NAME = "ravenclaws.toml";

/** Inputs to {@link resolveRunSettings}. */
export interface ConfigSources {
  /**
   * Values given on the command line (only those actually given). When
   * `goalFile` is set, `goal` holds that file's text.
   */
  flags: Partial<Record<RunSettingKey, unknown>>;
  env: NodeJS.ProcessEnv;
  /** Parsed `ravenclaws.toml` and its path, if one was found. */
  toml?: { path: string; data: Record<string, unknown> };
  /** The user config store's contents and its path. */
  user?: { path: string; data: Record<string, unknown> };
  /**
   * The settings saved in the state file of the heartbeat being resumed, and
   * that file's path; between the environment and `ravenclaws.toml`. Only
   * heartbeat-scoped keys are read; a key saved as null was unset and stays
   * unset (lower sources do not fill it).
   */
  saved?: { path: string; data: Record<string, unknown> };
}

/** A saved setting's value: unset settings are saved as null. */
export type SavedValue = string | number | boolean | string[] | null;

/** How a value from the saved settings is named in messages. */
export const savedSource = (file: string) => `the settings saved in ${file}`;

/** True for a setting a heartbeat keeps in its state file (scope `heartbeat` in the table). */
export function isHeartbeatScoped(key: RunSettingKey): boolean {
  return (SETTINGS[key] as SettingSpec).scope === "heartbeat";
}

/** The heartbeat-scoped settings of a resolved run, as saved in the state file (unset → null). */
export function savedSettingsOf(settings: RunSettings): Record<string, SavedValue> {
  const saved: Record<string, SavedValue> = {};
  for (const key of heartbeatSettingKeys()) {
    const value = settings[key] as SavedValue | undefined;
    saved[key] = value === undefined ? null : value;
  }
  return saved;
}

/** The merged settings and where each value came from. */
export interface ResolvedSettings {
  settings: RunSettings;
  sources: Partial<Record<RunSettingKey, string>>;
}

/** The type in words, for messages. */
function typeWords(spec: SettingSpec, typed = false): string {
  switch (spec.type) {
    case "boolean":
      return typed ? "a boolean (true or false, without quotes)" : "true or false";
    case "list":
      return typed ? "an array of strings" : "a list of strings (comma-separated)";
    case "integer":
      return "a whole number";
    case "number":
      return "a number";
    default:
      return "a string";
  }
}

function describeValue(raw: unknown, secret: boolean): string {
  if (secret) return "a value of another type (hidden)";
  if (typeof raw === "string") return `the string ${JSON.stringify(raw)}`;
  if (Array.isArray(raw)) return `the array ${JSON.stringify(raw)}`;
  return JSON.stringify(raw) ?? String(raw);
}

/**
 * Text (a flag or an environment variable) to the setting's type: numbers
 * parsed, booleans from true/false, 1/0, yes/no, on/off, lists split at commas.
 */
function fromText(raw: unknown, spec: SettingSpec): unknown {
  if (spec.type === "string") {
    if (typeof raw === "string") return raw;
    if (typeof raw === "number") return String(raw);
  } else if (spec.type === "number" || spec.type === "integer") {
    if (typeof raw === "number" && Number.isFinite(raw)) return raw;
    if (typeof raw === "string" && raw.trim() !== "" && Number.isFinite(Number(raw)))
      return Number(raw);
  } else if (spec.type === "list") {
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
  return undefined;
}

/** A value from a typed file (TOML, the user config's JSON): it must have the setting's type already. */
function fromTyped(raw: unknown, spec: SettingSpec): unknown {
  switch (spec.type) {
    case "string":
      return typeof raw === "string" ? raw : undefined;
    case "number":
    case "integer":
      return typeof raw === "number" ? raw : undefined;
    case "boolean":
      return typeof raw === "boolean" ? raw : undefined;
    default:
      return Array.isArray(raw) && raw.every((item) => typeof item === "string")
        ? raw.flatMap(splitList)
        : undefined;
  }
}

/** One place a value may come from, highest precedence first. */
interface Candidate {
  raw: unknown;
  /** For messages: `option --max-ticks`, `/p/ravenclaws.toml [heartbeat] max_ticks`. */
  source: string;
  /** The name under which it was given (the error's `key`). */
  name: string;
  typed: boolean;
  /** What to write instead, for a file value of the wrong type. */
  fix?: string;
  /** A null here is a decision (the setting was unset): lower sources do not fill it. */
  final?: boolean;
}

function tomlValue(data: Record<string, unknown>, dotted: string): unknown {
  let node: unknown = data;
  for (const part of dotted.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function candidatesOf(key: RunSettingKey, spec: SettingSpec, sources: ConfigSources): Candidate[] {
  const list: Candidate[] = [];
  const goalFile = key === "goal" ? sources.flags.goalFile : undefined;
  list.push({
    raw: sources.flags[key],
    source: typeof goalFile === "string" ? `--goal-file ${goalFile}` : `option --${spec.flag}`,
    name: `--${spec.flag}`,
    typed: false,
  });
  for (const name of spec.env ?? []) {
    list.push({
      raw: sources.env[name] === "" ? undefined : sources.env[name],
      source: `environment variable ${name}`,
      name,
      typed: false,
    });
  }
  if (sources.saved && spec.scope === "heartbeat" && Object.hasOwn(sources.saved.data, key)) {
    list.push({
      raw: sources.saved.data[key],
      source: savedSource(sources.saved.path),
      name: key,
      typed: true,
      final: true,
    });
  }
  if (spec.toml && sources.toml) {
    const [section, tomlKey] = spec.toml.split(".");
    list.push({
      raw: tomlValue(sources.toml.data, spec.toml),
      source: `${sources.toml.path} [${section}] ${tomlKey}`,
      name: spec.toml,
      typed: true,
      fix: `write ${tomlKey} = %VALUE% (a TOML ${tomlTypeOf(spec)}${spec.type === "string" || spec.type === "list" ? "" : ", without quotes"})`,
    });
  }
  if (spec.user && sources.user) {
    list.push({
      raw: sources.user.data[key],
      source: `user config ${sources.user.path} (${key})`,
      name: key,
      typed: true,
      fix: `set it again with \`ravenclaws config set ${key} <value>\``,
    });
  }
  return list;
}

function exampleOf(spec: SettingSpec): unknown {
  return (
    spec.default ??
    (spec.type === "list" ? [] : spec.type === "string" ? "…" : spec.type === "boolean" ? true : 1)
  );
}

function tomlTypeOf(spec: SettingSpec): string {
  if (spec.type === "list") return "array of strings";
  if (spec.type === "number" || spec.type === "integer") return "number";
  return spec.type;
}

/** A goal longer than its source allows. */
function checkGoalSize(goal: unknown, source: string, fromFile: boolean): void {
  if (typeof goal !== "string") return;
  const bytes = Buffer.byteLength(goal, "utf8");
  const limit = fromFile ? GOAL_FILE_MAX_BYTES : GOAL_MAX_BYTES;
  if (bytes <= limit) return;
  throw new ConfigError(
    `${source}: the goal is ${kb(bytes)}; at most ${kb(limit)} ${fromFile ? "may be read from a file" : "may be given inline"}.`,
    "goal",
    source,
    {
      hint: fromFile
        ? "Shorten it: the goal is sent with every model call."
        : "Put a longer goal in a file and pass --goal-file FILE (up to 256 KB); it is sent with every model call.",
    },
  );
}

const kb = (bytes: number) => `${Math.ceil(bytes / 1024)} KB`;

/** A candidate's value in the setting's type, or a config error saying what was given and what to write. */
function typedValue(candidate: Candidate, spec: SettingSpec): unknown {
  const raw = candidate.raw;
  const value = candidate.typed ? fromTyped(raw, spec) : fromText(raw, spec);
  if (value !== undefined) return value;
  const meant = typeof raw === "string" ? fromText(raw, spec) : undefined;
  const fix = candidate.fix?.replace("%VALUE%", JSON.stringify(meant ?? exampleOf(spec)));
  throw new ConfigError(
    `${candidate.source}: must be ${typeWords(spec, candidate.typed)}, got ${describeValue(raw, spec.secret === true)}.`,
    candidate.name,
    candidate.source,
    fix ? { hint: `${fix[0]?.toUpperCase()}${fix.slice(1)}.` } : undefined,
  );
}

/** Merges the sources key by key and validates the result. */
export function resolveRunSettings(sources: ConfigSources): ResolvedSettings {
  const merged: Record<string, unknown> = {};
  const from: Partial<Record<RunSettingKey, string>> = {};
  /** For merged lists: the source of each item. */
  const itemFrom: Partial<Record<RunSettingKey, string[]>> = {};
  for (const [key, spec] of settingEntries()) {
    const candidates = candidatesOf(key, spec, sources);
    // A config file value of the wrong type is an error even where a flag overrides it
    // (it is a typo in the file); a value out of bounds counts only where it is used.
    for (const candidate of candidates) {
      if (candidate.typed && candidate.raw != null) typedValue(candidate, spec);
    }
    for (const candidate of candidates) {
      if (candidate.raw === null && candidate.final) {
        from[key] = candidate.source;
        break;
      }
      if (candidate.raw === undefined || candidate.raw === null) continue;
      const value = typedValue(candidate, spec);
      if (key === "goal") {
        checkGoalSize(value, candidate.source, candidate.source.startsWith("--goal-file"));
      }
      if (spec.merge && Array.isArray(value)) {
        // A rule from any source applies: a flag adds to the file's deny rules, never drops them.
        const list = (merged[key] as string[] | undefined) ?? [];
        const origins = itemFrom[key] ?? [];
        itemFrom[key] = origins;
        for (const item of value as string[]) {
          if (list.includes(item)) continue;
          list.push(item);
          origins.push(candidate.source);
        }
        merged[key] = list;
        from[key] = from[key] ? `${from[key]}; ${candidate.source}` : candidate.source;
        continue;
      }
      merged[key] = value;
      from[key] = candidate.source;
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
    const secret = (SETTINGS as Record<string, SettingSpec>)[key]?.secret === true;
    const shown = secret ? "(hidden)" : JSON.stringify(value);
    throw new ConfigError(
      `${source}: ${issue?.message ?? "is invalid"} (got ${shown}).`,
      key,
      source,
    );
  }
  return { settings: parsed.data, sources: from };
}

/**
 * Parses a setting given as text (`config set`), as a flag or an environment
 * variable would be, and validates it with the setting's schema. Returns the
 * typed value, or what is wrong ("must be …").
 */
export function parseSettingText(
  key: RunSettingKey,
  text: string,
): { ok: true; value: unknown } | { ok: false; message: string } {
  const spec: SettingSpec = SETTINGS[key];
  const value = fromText(text, spec);
  if (value === undefined) return { ok: false, message: `must be ${typeWords(spec)}` };
  if (key === "goal" && Buffer.byteLength(text, "utf8") > GOAL_MAX_BYTES) {
    return { ok: false, message: `must be at most ${kb(GOAL_MAX_BYTES)}` };
  }
  const parsed = RunSettingsSchema.shape[key].safeParse(value);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, message: parsed.error.issues[0]?.message ?? "is invalid" };
}

/**
 * Refuses unknown sections and keys in a parsed `ravenclaws.toml`, naming the
 * file, the key and the nearest valid one.
 */
export function checkTomlKeys(file: string, data: Record<string, unknown>): void {
  const sections = tomlSections();
  const allKeys = [...sections].flatMap(([section, keys]) => keys.map((k) => `${section}.${k}`));
  const sectionNames = [...sections.keys()];
  for (const [name, value] of Object.entries(data)) {
    const keys = sections.get(name);
    if (keys === undefined) {
      const isTable = value !== null && typeof value === "object" && !Array.isArray(value);
      const hint = isTable
        ? didYouMean(name, sectionNames, (s) => `[${s}]`)
        : didYouMean(
            name,
            allKeys.map((k) => k.split(".")[1] ?? k),
            (k) => `${k} in [${allKeys.find((full) => full.endsWith(`.${k}`))?.split(".")[0]}]`,
          );
      throw new ConfigError(
        isTable
          ? `${file}: unknown section [${name}].${hint}`
          : `${file}: unknown key ${name} outside any section.${hint}`,
        name,
        file,
        {
          hint: `The sections are ${sectionNames.map((s) => `[${s}]`).join(", ")}; see the README's Configuration section.`,
        },
      );
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new ConfigError(
        `${file}: ${name} must be a section ([${name}]), not a value.`,
        name,
        file,
      );
    }
    for (const key of Object.keys(value)) {
      if (keys.includes(key)) continue;
      const elsewhere = allKeys.find((full) => full.endsWith(`.${key}`));
      const hint = elsewhere
        ? ` ${key} belongs in [${elsewhere.split(".")[0]}].`
        : didYouMean(key, keys);
      throw new ConfigError(
        `${file}: unknown key ${key} in [${name}].${hint}`,
        `${name}.${key}`,
        file,
        { hint: `The keys of [${name}] are ${keys.join(", ")}.` },
      );
    }
  }
}

/** Refuses unknown keys in the user config, naming the file, the key and the nearest valid one. */
export function checkUserKeys(file: string, data: Record<string, unknown>): void {
  const known = userKeys();
  for (const key of Object.keys(data)) {
    if ((known as string[]).includes(key)) continue;
    throw new ConfigError(
      `${file}: unknown user setting ${key}.${didYouMean(key, known)}`,
      key,
      file,
      {
        hint: `Remove it with \`ravenclaws config unset ${key}\`; the keys are ${known.join(", ")}.`,
      },
    );
  }
}

/**
 * Reads a goal file (`--goal-file`), at most {@link GOAL_FILE_MAX_BYTES}, as UTF-8.
 * Relative paths are taken from `cwd`.
 */
export async function readGoalFile(file: string, cwd: string): Promise<string> {
  const full = path.resolve(cwd, file);
  let handle: Awaited<ReturnType<typeof openFile>>;
  try {
    handle = await openFile(full, "r");
  } catch (error) {
    throw new UsageError(`--goal-file ${full} cannot be read: ${(error as Error).message}`, {
      option: "--goal-file",
    });
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      throw new UsageError(`--goal-file ${full} is not a regular file.`, { option: "--goal-file" });
    }
    const buffer = Buffer.alloc(GOAL_FILE_MAX_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > GOAL_FILE_MAX_BYTES) {
      throw new UsageError(
        `--goal-file ${full} is larger than ${kb(GOAL_FILE_MAX_BYTES)}, the most a goal may be.`,
        { option: "--goal-file", hint: "Shorten it: the goal is sent with every model call." },
      );
    }
    return buffer.subarray(0, length).toString("utf8");
  } finally {
    await handle.close();
  }
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
  let text: string | null;
  try {
    // Never a blocking read: a FIFO in the file's place is refused at once.
    text = await readRegularFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOTDIR" && !explicit) return undefined;
    throw new ConfigError(
      `Cannot read the config file ${file}: ${(error as Error).message}`,
      "--config",
      file,
    );
  }
  if (text === null) {
    if (!explicit) return undefined;
    throw new ConfigError(
      `Cannot read the config file ${file}: it does not exist.`,
      "--config",
      file,
    );
  }
  const { parse } = await import("smol-toml");
  let data: Record<string, unknown>;
  try {
    data = parse(text) as Record<string, unknown>;
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
  checkTomlKeys(file, data);
  return { path: file, data };
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
  let user: { path: string; data: Record<string, unknown> };
  try {
    const store = await openUserStore(env);
    user = { path: store.path, data: { ...store.store } };
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
  checkUserKeys(user.path, user.data);
  return user;
}
