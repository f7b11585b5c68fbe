/**
 * The one table of run settings. Each setting is declared here once: its
 * type, default, flag, environment variables, `ravenclaws.toml` key, user
 * config key, help text, bounds and scope. The yargs options (`run.ts`), the
 * zod schema (`schemas/config.ts`), the layered reader (`services/config.ts`),
 * `config set` and the README's configuration table are derived from it.
 *
 * Pure and light: no zod, no yargs, no I/O, so every command may import it.
 */
import { isDuration, parseDuration } from "./services/duration.js";
import { nearest } from "./services/suggest.js";
import { isRule, RULE_SYNTAX, TOOL_MODES } from "./services/tools/ruleSyntax.js";

/** How `shell_exec` is confined (`--sandbox`): see README, Confinement. */
export const SANDBOX_MODES = ["auto", "bwrap", "off"] as const;
/** One of {@link SANDBOX_MODES}. */
export type SandboxMode = (typeof SANDBOX_MODES)[number];

/** The web search providers (`--search-provider`): see README, Tools. */
export const SEARCH_PROVIDERS = ["searxng", "brave"] as const;
/** One of {@link SEARCH_PROVIDERS}. */
export type SearchProviderName = (typeof SEARCH_PROVIDERS)[number];

/** The notification events (`--notify-on`): see README, Unattended runs. */
export const NOTIFY_EVENTS = [
  "approval-needed",
  "failed",
  "completed",
  "budget",
  "attention",
  "ok",
] as const;
/** One of {@link NOTIFY_EVENTS}. */
export type NotifyEventKind = (typeof NOTIFY_EVENTS)[number];
/** The events that notify by default: all but `ok`. */
export const NOTIFY_DEFAULT_EVENTS: readonly NotifyEventKind[] = NOTIFY_EVENTS.filter(
  (e) => e !== "ok",
);

/** Default OpenAI-compatible endpoint. */
export const DEFAULT_BASE_URL = "https://api.openai.com/v1";
/** Default model. */
export const DEFAULT_MODEL = "gpt-4o-mini";

/** Heartbeat ids become file names: a safe alphabet only. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** `HH:MM-HH:MM`, 24-hour clock; the end may be before the start (a window over midnight). */
export const ACTIVE_HOURS_PATTERN = /^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$/;

/** Longest goal given inline (flag, environment, config files), in UTF-8 bytes. */
export const GOAL_MAX_BYTES = 16 * 1024;
/** Longest goal read with `--goal-file`, in UTF-8 bytes. */
export const GOAL_FILE_MAX_BYTES = 256 * 1024;

/** Seconds in a duration text (`90s`, `15m`, `1h30m`, `1.5d`, a bare number of seconds); null when it is not one. */
export const durationSeconds = parseDuration;

const isPositiveDuration = (text: string) => (durationSeconds(text) ?? 0) > 0;

/** What `--ask-fallback` gives a call nobody decided within `--ask-timeout`. */
export const ASK_FALLBACKS = ["deny", "allow"] as const;

/** One year, the longest tick interval. */
export const YEAR_SECONDS = 365 * 24 * 3600;

/** True for a time zone name the runtime knows (IANA, or UTC). */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

/** The value types; `list` is an array of strings (comma-separated in flags and the environment). */
export type SettingType = "string" | "number" | "integer" | "boolean" | "list";

/**
 * Whether a heartbeat keeps the setting: `heartbeat` settings are saved with
 * it and used again on resume; `run` settings concern one invocation only.
 */
export type SettingScope = "heartbeat" | "run";

/** A check on a text value (or on each item of a list): a predicate and what it requires. */
export interface TextCheck {
  test: (text: string) => boolean;
  /** What a valid value is, completing "must …" in messages. */
  message: string;
}

/** The declaration of one setting. */
export interface SettingSpec {
  type: SettingType;
  /** Words for the README's first column. */
  label: string;
  /** The flag without dashes (kebab case); none for settings that only come from elsewhere. */
  flag?: string;
  /** Other spellings of the flag (the Rust original's `--heartbeat-*`, `-q`). */
  aliases?: readonly string[];
  /** Environment variables, highest precedence first. */
  env?: readonly string[];
  /** `section.key` in ravenclaws.toml. */
  toml?: string;
  /** Whether the user config (`ravenclaws config set`) may hold it, under the setting's name. */
  user?: boolean;
  /** The default value; a setting without one is optional. */
  default?: string | number | boolean | readonly string[];
  /** The default in words, for `--help` and the README, when the value alone does not say it. */
  defaultText?: string;
  /** The type in words for the README (`seconds`, `integer ≥ 0`, …). */
  typeText: string;
  /** `--help` text. */
  help: string;
  /** The README's longer explanation (Markdown), when `help` is not enough. */
  doc?: string;
  scope: SettingScope;
  /** Numbers: the least value; `exclusiveMin` makes it "more than". */
  min?: number;
  exclusiveMin?: boolean;
  /** Numbers: the greatest value, with its reason in words for the message. */
  max?: number;
  maxText?: string;
  /** Strings: refuse empty or blank values. */
  nonEmpty?: boolean;
  /** Strings: strip surrounding white space. */
  trim?: boolean;
  /** Strings: the allowed values. */
  choices?: readonly string[];
  /** Strings (or each item of a list): a further check. */
  check?: TextCheck;
  /** Lists only: add up the items of every source instead of taking the first (deny rules). */
  merge?: boolean;
  /** Never shown in messages. */
  secret?: boolean;
  /**
   * The commands that take its flag, when they are not `run` (the database
   * settings: `worker`, `db migrate`, …): such a setting is no `run` option.
   * They declare it with its spec (`databaseOptions`).
   */
  commands?: readonly string[];
}

/** Every run setting. The order is the README's and `config list`'s. */
export const SETTINGS = {
  goal: {
    type: "string",
    label: "goal",
    flag: "goal",
    aliases: ["heartbeat-goal"],
    env: ["RAVENCLAWS_HEARTBEAT_GOAL", "RAVENCLAWS_GOAL"],
    toml: "heartbeat.goal",
    typeText: "string (≤ 16 KB)",
    defaultText: "required for a new heartbeat",
    help: "The mission (required for a new heartbeat; at most 16 KB, longer with --goal-file)",
    doc: "the mission; at most 16 KB (a longer one from a file with `--goal-file`)",
    scope: "run",
    nonEmpty: true,
    trim: true,
  },
  goalFile: {
    type: "string",
    label: "goal file",
    flag: "goal-file",
    typeText: "path",
    help: "Read the goal from this file (UTF-8, at most 256 KB) instead of --goal",
    doc: "read the goal from this file (UTF-8, at most 256 KB) instead of `--goal`",
    scope: "run",
    nonEmpty: true,
  },
  id: {
    type: "string",
    label: "id",
    flag: "id",
    aliases: ["heartbeat-session"],
    env: ["RAVENCLAWS_HEARTBEAT_SESSION", "RAVENCLAWS_ID"],
    typeText: "string",
    defaultText: "a new UUID",
    help: "Heartbeat id; an existing id resumes it",
    doc: "heartbeat id (letters, digits, `.`, `_`, `-`); an existing id resumes",
    scope: "run",
    check: {
      test: (s) => ID_PATTERN.test(s),
      message:
        "be letters, digits, '.', '_' and '-' only (at most 128), starting with a letter or digit",
    },
  },
  tickInterval: {
    type: "number",
    label: "tick interval",
    flag: "tick-interval",
    aliases: ["heartbeat-tick-interval"],
    env: ["RAVENCLAWS_HEARTBEAT_TICK_INTERVAL", "RAVENCLAWS_TICK_INTERVAL"],
    toml: "heartbeat.tick_interval_secs",
    user: true,
    default: 300,
    typeText: "seconds, 0 to 1 year",
    help: "Seconds between ticks; 0 = back to back",
    doc: "sleep between ticks; `0` = back to back; at most a year",
    scope: "heartbeat",
    min: 0,
    max: YEAR_SECONDS,
    maxText: "one year",
  },
  maxTicks: {
    type: "integer",
    label: "max ticks",
    flag: "max-ticks",
    aliases: ["heartbeat-max-ticks"],
    env: ["RAVENCLAWS_HEARTBEAT_MAX_TICKS", "RAVENCLAWS_MAX_TICKS"],
    toml: "heartbeat.max_ticks",
    user: true,
    default: 0,
    defaultText: "0 (unlimited)",
    typeText: "integer ≥ 0",
    help: "Stop (completed) after this many ticks; 0 = unlimited",
    doc: "stop (`completed`, reason `max-ticks`) after this many ticks",
    scope: "heartbeat",
    min: 0,
  },
  maxIterationsPerTick: {
    type: "integer",
    label: "max iterations per tick",
    flag: "max-iterations-per-tick",
    env: ["RAVENCLAWS_MAX_ITERATIONS_PER_TICK"],
    toml: "heartbeat.max_iterations_per_tick",
    user: true,
    default: 5,
    typeText: "integer, 1 to 1000",
    help: "Model calls allowed in one execute phase",
    doc: "model calls allowed in one execute phase",
    scope: "heartbeat",
    min: 1,
    max: 1000,
  },
  maxConsecutiveFailures: {
    type: "integer",
    label: "max consecutive failures",
    flag: "max-consecutive-failures",
    env: ["RAVENCLAWS_MAX_CONSECUTIVE_FAILURES"],
    toml: "heartbeat.max_consecutive_failures",
    user: true,
    default: 5,
    typeText: "integer ≥ 1",
    help: "End in failed after this many failed ticks in a row",
    doc: "end in `failed` after this many failed ticks in a row",
    scope: "heartbeat",
    min: 1,
  },
  tools: {
    type: "boolean",
    label: "tools",
    flag: "tools",
    env: ["RAVENCLAWS_TOOLS"],
    toml: "heartbeat.enable_tools",
    user: true,
    default: true,
    typeText: "boolean",
    help: "Tool calling in the execute phase (--no-tools: the plan is the result)",
    doc: "tool calling in the execute phase; without tools the plan is the tick's result",
    scope: "heartbeat",
  },
  workdir: {
    type: "string",
    label: "workdir",
    flag: "workdir",
    env: ["RAVENCLAWS_WORKDIR"],
    toml: "heartbeat.workdir",
    typeText: "path",
    defaultText: "current directory",
    help: "The workspace the tools act in",
    doc: "the workspace the tools act in; must exist",
    scope: "run",
    nonEmpty: true,
  },
  stateDir: {
    type: "string",
    label: "state dir",
    flag: "state-dir",
    env: ["RAVENCLAWS_STATE_DIR"],
    toml: "heartbeat.state_dir",
    typeText: "path",
    defaultText: "<workdir>/.ravenclaws",
    help: "Where state, journal and lock live",
    doc: "where the state file, journal and lock live",
    scope: "run",
    nonEmpty: true,
  },
  model: {
    type: "string",
    label: "model",
    flag: "model",
    env: ["RAVENCLAWS_MODEL"],
    toml: "llm.model",
    user: true,
    default: DEFAULT_MODEL,
    typeText: "string",
    help: "Model name",
    doc: "model name",
    scope: "heartbeat",
    nonEmpty: true,
  },
  baseUrl: {
    type: "string",
    label: "base URL",
    flag: "base-url",
    env: ["RAVENCLAWS_BASE_URL", "OPENAI_BASE_URL"],
    toml: "llm.base_url",
    user: true,
    default: DEFAULT_BASE_URL,
    typeText: "http(s) URL",
    help: "OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, LM Studio, llama.cpp, OpenRouter)",
    doc: "any OpenAI-compatible endpoint",
    scope: "heartbeat",
    check: { test: isHttpUrl, message: "be an http:// or https:// URL" },
  },
  apiKey: {
    type: "string",
    label: "API key",
    flag: "api-key",
    env: ["RAVENCLAWS_API_KEY", "OPENAI_API_KEY"],
    toml: "llm.api_key",
    user: true,
    typeText: "string",
    defaultText: "none",
    help: "API key (prefer the environment: it shows in no process list)",
    doc: "API key; local servers need none",
    scope: "run",
    nonEmpty: true,
    secret: true,
  },
  requestTimeout: {
    type: "number",
    label: "request timeout",
    flag: "request-timeout",
    env: ["RAVENCLAWS_REQUEST_TIMEOUT"],
    toml: "llm.request_timeout_secs",
    user: true,
    default: 120,
    typeText: "seconds, > 0 to 1 h",
    help: "Seconds before a model request times out",
    doc: "per model request",
    scope: "heartbeat",
    min: 0,
    exclusiveMin: true,
    max: 3600,
    maxText: "one hour",
  },
  maxRetries: {
    type: "integer",
    label: "max retries",
    flag: "max-retries",
    env: ["RAVENCLAWS_MAX_RETRIES"],
    toml: "llm.max_retries",
    user: true,
    default: 2,
    typeText: "integer, 0 to 100",
    help: "Retries of a failed model request (connection errors, 408, 409, 429, 5xx)",
    doc: "retries of a failed model request (connection errors, 408, 409, 429, 5xx), done by the openai SDK with backoff and `retry-after`",
    scope: "heartbeat",
    min: 0,
    max: 100,
  },
  maxTokens: {
    type: "integer",
    label: "token budget",
    flag: "max-tokens",
    env: ["RAVENCLAWS_MAX_TOKENS"],
    toml: "heartbeat.max_tokens",
    user: true,
    default: 0,
    defaultText: "0 (none)",
    typeText: "integer ≥ 0",
    help: "Lifetime token budget; when spent the heartbeat ends failed (reason budget). 0 = none",
    doc: "lifetime token budget: a call it cannot pay for (estimated) is not made, and once spent the heartbeat ends `failed`, reason `budget`",
    scope: "heartbeat",
    min: 0,
  },
  maxTokensPerTick: {
    type: "integer",
    label: "token budget per tick",
    flag: "max-tokens-per-tick",
    env: ["RAVENCLAWS_MAX_TOKENS_PER_TICK"],
    toml: "heartbeat.max_tokens_per_tick",
    user: true,
    default: 0,
    defaultText: "0 (none)",
    typeText: "integer ≥ 0",
    help: "Token budget of one tick; when spent the tick's tool loop ends early. 0 = none",
    doc: "token budget of one tick: the execute loop stops before a call that would not fit",
    scope: "heartbeat",
    min: 0,
  },
  maxTokensPerDay: {
    type: "integer",
    label: "token cap per day",
    flag: "max-tokens-per-day",
    env: ["RAVENCLAWS_MAX_TOKENS_PER_DAY"],
    toml: "heartbeat.max_tokens_per_day",
    user: true,
    default: 0,
    defaultText: "0 (none)",
    typeText: "integer ≥ 0",
    help: "Tokens per calendar day (in --timezone); reached: sleep until the next day starts. 0 = none",
    doc: "tokens per calendar day in `--timezone`: once reached the heartbeat sleeps until the next day starts (status `sleeping`, reason `daily-budget`), it does not fail; the tick in progress finishes",
    scope: "heartbeat",
    min: 0,
  },
  maxCostPerDay: {
    type: "number",
    label: "cost cap per day",
    flag: "max-cost-per-day",
    env: ["RAVENCLAWS_MAX_COST_PER_DAY"],
    toml: "heartbeat.max_cost_per_day",
    user: true,
    default: 0,
    defaultText: "0 (none)",
    typeText: "USD ≥ 0",
    help: "US dollars per calendar day at the --price-* prices; reached: sleep until the next day. 0 = none",
    doc: "US dollars per calendar day in `--timezone`, at the `--price-*` prices (required with it): once reached the heartbeat sleeps until the next day starts, as with `--max-tokens-per-day`",
    scope: "heartbeat",
    min: 0,
  },
  idleRecheck: {
    type: "string",
    label: "idle recheck",
    flag: "idle-recheck",
    env: ["RAVENCLAWS_IDLE_RECHECK"],
    toml: "heartbeat.idle_recheck",
    user: true,
    default: "1h",
    typeText: "duration (`90s`, `15m`, `1h`)",
    help: "After an idle tick, ticks that find the workspace unchanged make no model call until this long after the last one; 0 = every tick calls",
    doc: "after an idle tick, a tick whose workspace fingerprint is unchanged, with no checklist task due and no `wake`, makes no model call (journaled `quiet`, reason `unchanged`) until this long after the last call; `0` turns quiet ticks off (goals that watch things outside the workspace)",
    scope: "heartbeat",
    trim: true,
    check: { test: isDuration, message: "be a duration such as 0, 90s, 15m, 1h or 1d" },
  },
  checklist: {
    type: "string",
    label: "checklist file",
    flag: "checklist",
    env: ["RAVENCLAWS_CHECKLIST"],
    toml: "heartbeat.checklist",
    typeText: "path",
    defaultText: "`HEARTBEAT.md` in the workdir",
    help: "Standing instructions and recurring tasks (- [every 1h] …) for every assessment",
    doc: "standing instructions included in every assessment, and recurring tasks (`- [every 1h] Check the plants`) that enter it only when due ([Checklist](#checklist-heartbeatmd)); relative to the workdir",
    scope: "heartbeat",
    nonEmpty: true,
    trim: true,
  },
  checklistMaxBytes: {
    type: "integer",
    label: "checklist cap",
    flag: "checklist-max-bytes",
    env: ["RAVENCLAWS_CHECKLIST_MAX_BYTES"],
    toml: "heartbeat.checklist_max_bytes",
    user: true,
    default: 4096,
    typeText: "bytes, 0 to 64 KB",
    help: "Most bytes of the checklist's instructions put into a prompt (cut with a notice)",
    doc: "most bytes of the checklist's standing instructions put into each assessment; a longer text is cut, and the prompt says so",
    scope: "heartbeat",
    min: 0,
    max: 65536,
    maxText: "64 KB",
  },
  failureBackoff: {
    type: "number",
    label: "failure backoff",
    flag: "failure-backoff",
    env: ["RAVENCLAWS_FAILURE_BACKOFF"],
    toml: "heartbeat.failure_backoff_secs",
    user: true,
    default: 5,
    typeText: "seconds, 0 to 1 h",
    help: "Seconds to wait after a failed tick, doubled for each further failure in a row (max 1 h); 0 = none",
    doc: "after failed ticks the next waits `max(interval, this) × 2^(failures − 1)`, at most 1 h; `0` = no backoff",
    scope: "heartbeat",
    min: 0,
    max: 3600,
    maxText: "one hour (the backoff never exceeds it)",
  },
  cron: {
    type: "string",
    label: "cron schedule",
    flag: "cron",
    env: ["RAVENCLAWS_CRON"],
    toml: "heartbeat.cron",
    typeText: "cron string",
    defaultText: "none",
    help: 'Tick on a cron schedule instead of the interval, e.g. "*/15 * * * *"',
    doc: "tick at cron times (5 or 6 fields, croner syntax) instead of every `--tick-interval`",
    scope: "heartbeat",
    nonEmpty: true,
    trim: true,
  },
  activeHours: {
    type: "string",
    label: "active hours",
    flag: "active-hours",
    env: ["RAVENCLAWS_ACTIVE_HOURS"],
    toml: "heartbeat.active_hours",
    user: true,
    typeText: "`HH:MM-HH:MM`",
    defaultText: "always",
    help: "Only tick inside this daily window, e.g. 08:00-22:00; ticks due outside are skipped",
    doc: "tick only inside this daily window (may span midnight); ticks due outside are skipped (journaled) and run when it opens",
    scope: "heartbeat",
    check: {
      test: (s) => ACTIVE_HOURS_PATTERN.test(s),
      message: "be HH:MM-HH:MM, e.g. 08:00-22:00",
    },
  },
  timezone: {
    type: "string",
    label: "time zone",
    flag: "timezone",
    env: ["RAVENCLAWS_TIMEZONE"],
    toml: "heartbeat.timezone",
    user: true,
    typeText: "IANA name",
    defaultText: "the system's",
    help: "IANA time zone of --cron and --active-hours",
    doc: "time zone of `--cron` and `--active-hours`",
    scope: "heartbeat",
    check: { test: isTimeZone, message: "be an IANA time zone such as Europe/Berlin or UTC" },
  },
  priceInput: {
    type: "number",
    label: "input price",
    flag: "price-input",
    env: ["RAVENCLAWS_PRICE_INPUT"],
    toml: "llm.price_input_per_mtok",
    user: true,
    typeText: "USD ≥ 0",
    defaultText: "none",
    help: "US dollars per million input tokens, for a cost figure",
    doc: "US dollars per million input tokens: adds `costUsd` to the usage in the state file and journal",
    scope: "heartbeat",
    min: 0,
  },
  priceOutput: {
    type: "number",
    label: "output price",
    flag: "price-output",
    env: ["RAVENCLAWS_PRICE_OUTPUT"],
    toml: "llm.price_output_per_mtok",
    user: true,
    typeText: "USD ≥ 0",
    defaultText: "none",
    help: "US dollars per million output tokens, for a cost figure",
    doc: "US dollars per million output tokens: adds `costUsd` to the usage in the state file and journal",
    scope: "heartbeat",
    min: 0,
  },
  priceCachedInput: {
    type: "number",
    label: "cached input price",
    flag: "price-cached-input",
    env: ["RAVENCLAWS_PRICE_CACHED_INPUT"],
    toml: "llm.price_cached_input_per_mtok",
    user: true,
    typeText: "USD ≥ 0",
    defaultText: "the input price",
    help: "US dollars per million cached input tokens (prompt_tokens_details.cached_tokens)",
    doc: "US dollars per million prompt tokens the server reports as cached (`prompt_tokens_details.cached_tokens`); without it they cost the input price",
    scope: "heartbeat",
    min: 0,
  },
  toolMode: {
    type: "string",
    label: "tool mode",
    flag: "tool-mode",
    env: ["RAVENCLAWS_TOOL_MODE"],
    toml: "tools.mode",
    user: true,
    default: "workspace-write",
    choices: TOOL_MODES,
    typeText: "mode",
    help: "What tools may do: read-only, workspace-write or full (see README, Tools)",
    doc: "what tools may do: `read-only`, `workspace-write` or `full` ([Tools](#policy-modes-and-rules))",
    scope: "heartbeat",
  },
  toolDeny: {
    type: "list",
    label: "deny rules (add up)",
    flag: "deny",
    env: ["RAVENCLAWS_TOOLS_DENY"],
    toml: "tools.deny",
    user: true,
    default: [],
    defaultText: "none",
    typeText: "list",
    help: "Tool rules to refuse, e.g. 'shell(git push*)' (several, or comma-separated)",
    doc: "tool rules to refuse, such as `'shell(git push*)'` or `'write(src/**)'`; several values or comma-separated; every source's rules add up",
    scope: "heartbeat",
    merge: true,
    check: { test: isRule, message: `be rules written ${RULE_SYNTAX}` },
  },
  toolAsk: {
    type: "list",
    label: "ask rules (add up)",
    flag: "ask",
    env: ["RAVENCLAWS_TOOLS_ASK"],
    toml: "tools.ask",
    user: true,
    default: [],
    defaultText: "none",
    typeText: "list",
    help: "Tool rules that need the operator's approval: the call waits for `ravenclaws approve` / `deny` (or a yes on the terminal)",
    doc: "tool rules that need the operator's approval: the call waits (persisted) for `ravenclaws approve`/`deny` from any terminal, or a yes at the prompt when run on a terminal; every source's rules add up",
    scope: "heartbeat",
    merge: true,
    check: { test: isRule, message: `be rules written ${RULE_SYNTAX}` },
  },
  askTimeout: {
    type: "string",
    label: "ask timeout",
    flag: "ask-timeout",
    env: ["RAVENCLAWS_ASK_TIMEOUT"],
    toml: "tools.ask_timeout",
    user: true,
    defaultText: "none (wait until decided)",
    typeText: "duration (`90s`, `10m`, `2h`)",
    help: "How long a tool call matched by an ask rule waits for approve/deny before --ask-fallback decides it (e.g. 10m)",
    doc: "how long a tool call matched by an `ask` rule waits for `ravenclaws approve`/`deny` (or the terminal) before `--ask-fallback` decides it, journaled as `timeout`",
    scope: "heartbeat",
    nonEmpty: true,
    trim: true,
    check: { test: isPositiveDuration, message: "be a duration above 0 such as 90s, 10m or 2h" },
  },
  askFallback: {
    type: "string",
    label: "ask fallback",
    flag: "ask-fallback",
    env: ["RAVENCLAWS_ASK_FALLBACK"],
    toml: "tools.ask_fallback",
    user: true,
    default: "deny",
    choices: ASK_FALLBACKS,
    typeText: "`deny` or `allow`",
    help: "What a call that waited longer than --ask-timeout gets: deny or allow",
    doc: "what a call that waited longer than `--ask-timeout` gets: `deny` (the model is told) or `allow`",
    scope: "heartbeat",
  },
  toolAllow: {
    type: "list",
    label: "allow rules",
    flag: "allow",
    env: ["RAVENCLAWS_TOOLS_ALLOW"],
    toml: "tools.allow",
    user: true,
    default: [],
    defaultText: "none",
    typeText: "list",
    help: "Tool rules to allow beyond the mode, e.g. 'shell(npm test)'",
    doc: "tool rules to allow beyond the mode, such as `'shell(npm test)'`",
    scope: "heartbeat",
    check: { test: isRule, message: `be rules written ${RULE_SYNTAX}` },
  },
  allowWeb: {
    type: "boolean",
    label: "web tools for any host",
    flag: "allow-web",
    env: ["RAVENCLAWS_ALLOW_WEB"],
    toml: "tools.allow_web",
    user: true,
    default: false,
    typeText: "boolean",
    help: "Offer web_fetch and the browser for any public host (web_search needs --search-provider)",
    doc: "offer `web_fetch` and `browser` for any public host (`web_search` needs `--search-provider`)",
    scope: "heartbeat",
  },
  allowedHosts: {
    type: "list",
    label: "web allowed hosts",
    flag: "allowed-hosts",
    env: ["RAVENCLAWS_ALLOWED_HOSTS"],
    toml: "tools.allowed_hosts",
    user: true,
    default: [],
    defaultText: "none",
    typeText: "list",
    help: "Offer web_fetch and the browser for these hosts only (example.com, *.example.com; any port)",
    doc: "offer `web_fetch` and `browser` for these hosts only (`example.com`, `*.example.com`); ports are not part of the match",
    scope: "heartbeat",
    check: {
      test: (s) => /^(\*\.)?[A-Za-z0-9_.-]+$|^\[?[0-9A-Fa-f:.]+\]?$/.test(s),
      message: "be host names such as example.com or *.example.com (no scheme, port or path)",
    },
  },
  searchProvider: {
    type: "string",
    label: "web search provider",
    flag: "search-provider",
    env: ["RAVENCLAWS_SEARCH_PROVIDER"],
    toml: "tools.search_provider",
    user: true,
    defaultText: "none (no web_search)",
    choices: SEARCH_PROVIDERS,
    typeText: "provider",
    help: "Offer web_search through this provider: searxng (needs --search-url) or brave (key in --search-key-env)",
    doc: "offer `web_search` through `searxng` (your instance, `--search-url`) or `brave` (Brave Search API, key in the variable `--search-key-env` names)",
    scope: "heartbeat",
  },
  searchUrl: {
    type: "string",
    label: "web search URL",
    flag: "search-url",
    env: ["RAVENCLAWS_SEARCH_URL"],
    toml: "tools.search_url",
    user: true,
    defaultText: "none (brave: its public API)",
    typeText: "http(s) URL",
    help: "searxng: the instance's URL; brave: replaces the API endpoint (tests, proxies)",
    doc: "`searxng`: the instance (its JSON API must be enabled); `brave`: replaces `https://api.search.brave.com/res/v1/web/search` (tests, proxies)",
    scope: "heartbeat",
    check: { test: isHttpUrl, message: "be an http:// or https:// URL" },
  },
  searchKeyEnv: {
    type: "string",
    label: "web search key variable",
    flag: "search-key-env",
    env: ["RAVENCLAWS_SEARCH_KEY_ENV"],
    toml: "tools.search_key_env",
    user: true,
    default: "BRAVE_SEARCH_API_KEY",
    typeText: "variable name",
    help: "Name of the environment variable holding the search API key (brave); the key itself is never saved",
    doc: "the NAME of the environment variable holding the Brave key; the key is read at start, never saved, never shown to tools",
    scope: "heartbeat",
    check: {
      test: (s) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(s),
      message: "be an environment variable name (letters, digits, _)",
    },
  },
  browserPath: {
    type: "string",
    label: "browser path",
    flag: "browser-path",
    env: ["RAVENCLAWS_BROWSER_PATH"],
    toml: "tools.browser_path",
    user: true,
    defaultText: "/usr/bin/chromium, chromium, chromium-browser",
    typeText: "path",
    help: "The Chromium (or Chrome) executable the browser tool drives",
    doc: "the Chromium or Chrome executable the `browser` tool drives (none found: no `browser` tool, one notice)",
    scope: "heartbeat",
    nonEmpty: true,
  },
  envAllow: {
    type: "list",
    label: "shell env allow-list",
    flag: "env-allow",
    env: ["RAVENCLAWS_ENV_ALLOW"],
    toml: "tools.env_allow",
    user: true,
    default: [],
    defaultText: "none",
    typeText: "list",
    help: "Secret-looking variables shell_exec may still see (names; * wildcard)",
    doc: "secret-looking environment variables `shell_exec` may still see",
    scope: "heartbeat",
    check: {
      test: (s) => /^[A-Za-z0-9_*]+$/.test(s),
      message: "be variable names (letters, digits, _; * as a wildcard)",
    },
  },
  shellTimeout: {
    type: "number",
    label: "shell timeout",
    flag: "shell-timeout",
    env: ["RAVENCLAWS_SHELL_TIMEOUT"],
    toml: "tools.shell_timeout_secs",
    user: true,
    default: 60,
    typeText: "seconds, > 0 to 1 day",
    help: "Seconds a shell_exec command may run unless it asks for another limit",
    doc: "how long a `shell_exec` command may run unless it asks for another limit",
    scope: "heartbeat",
    min: 0,
    exclusiveMin: true,
    max: 86400,
    maxText: "one day",
  },
  sandbox: {
    type: "string",
    label: "shell sandbox",
    flag: "sandbox",
    env: ["RAVENCLAWS_SANDBOX"],
    toml: "tools.sandbox",
    user: true,
    default: "auto",
    choices: SANDBOX_MODES,
    typeText: "mode",
    help: "How shell_exec is confined: auto (bubblewrap when it works, else no shell_exec), bwrap (required: exit 2 without it) or off (unconfined; warns)",
    doc: "how `shell_exec` is confined: `auto` (bubblewrap when it works, else no `shell_exec`), `bwrap` (required: exit 2 without it) or `off` (unconfined; warns)",
    scope: "heartbeat",
  },
  shellNetwork: {
    type: "boolean",
    label: "shell network",
    flag: "shell-network",
    env: ["RAVENCLAWS_SHELL_NETWORK"],
    toml: "tools.shell_network",
    user: true,
    default: false,
    typeText: "boolean",
    help: "Let sandboxed shell_exec commands reach the network (off: no network at all)",
    doc: "let sandboxed `shell_exec` commands reach the network (off: no network at all)",
    scope: "heartbeat",
  },
  notifyUrl: {
    type: "string",
    label: "notify URL",
    flag: "notify-url",
    env: ["RAVENCLAWS_NOTIFY_URL"],
    toml: "notify.url",
    user: true,
    typeText: "http(s) URL",
    defaultText: "none",
    help: "POST one JSON event to this URL on the events of --notify-on (webhook, Slack, ntfy)",
    doc: "POST one JSON event to this URL on the events of `--notify-on` (see [Unattended runs](#unattended-runs)); not saved with the heartbeat (a webhook URL is often a secret)",
    scope: "run",
    check: { test: isHttpUrl, message: "be an http:// or https:// URL" },
  },
  notifyTokenEnv: {
    type: "string",
    label: "notify token variable",
    flag: "notify-token-env",
    env: ["RAVENCLAWS_NOTIFY_TOKEN_ENV"],
    toml: "notify.token_env",
    user: true,
    typeText: "variable name",
    defaultText: "none",
    help: "Name of the environment variable holding the bearer token sent to --notify-url",
    doc: "the NAME of the environment variable whose value `--notify-url` gets as `Authorization: Bearer …` (the token itself is never a flag or a file)",
    scope: "run",
    check: {
      test: (s) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(s),
      message: "be an environment variable name (letters, digits, _), not the token itself",
    },
  },
  notifyCommand: {
    type: "string",
    label: "notify command",
    flag: "notify-command",
    env: ["RAVENCLAWS_NOTIFY_COMMAND"],
    toml: "notify.command",
    user: true,
    typeText: "shell command",
    defaultText: "none",
    help: "Run this command (sh -c, outside the tool sandbox) with each event as JSON on stdin",
    doc: "run this command (`sh -c`, outside the tool sandbox, 10 s timeout, without the API key and notify token in its environment) with each event as JSON on stdin",
    scope: "run",
    nonEmpty: true,
  },
  notifyOn: {
    type: "list",
    label: "notify on",
    flag: "notify-on",
    env: ["RAVENCLAWS_NOTIFY_ON"],
    toml: "notify.on",
    user: true,
    default: NOTIFY_DEFAULT_EVENTS,
    defaultText: "all but ok",
    typeText: "list of events",
    help: `Events that notify: ${NOTIFY_EVENTS.join(", ")}`,
    doc: `the events that notify: ${NOTIFY_EVENTS.map((e) => `\`${e}\``).join(", ")}; \`ok\` (every ordinary tick) only when listed`,
    scope: "run",
    check: {
      test: (s) => (NOTIFY_EVENTS as readonly string[]).includes(s),
      message: `be event names: ${NOTIFY_EVENTS.join(", ")}`,
    },
  },
  databaseUrl: {
    type: "string",
    label: "database URL",
    flag: "database-url",
    env: ["RAVENCLAWS_DATABASE_URL"],
    typeText: "postgres:// URL",
    defaultText: "none (the files of the state dir)",
    help: "PostgreSQL database of heartbeats: postgres://USER:PASSWORD@HOST:PORT/DATABASE (prefer the environment: it shows in no process list)",
    doc: "keep heartbeats in this PostgreSQL database (see [Running on more than one machine](#running-on-more-than-one-machine)); a secret like the API key: flag or environment only, never saved with a heartbeat, its password redacted everywhere",
    scope: "run",
    secret: true,
    trim: true,
    commands: ["db migrate", "worker", "create", "serve"],
  },
  embeddedDb: {
    type: "string",
    label: "embedded database",
    flag: "embedded-db",
    env: ["RAVENCLAWS_EMBEDDED_DB"],
    typeText: "path",
    defaultText: "none",
    help: "Run an embedded PostgreSQL whose data lives in this directory (a single-machine trial of the database mode) instead of --database-url",
    doc: "start (or use the running) embedded PostgreSQL whose data lives in this directory, instead of `--database-url`: the single-machine trial of the database mode",
    scope: "run",
    commands: ["db migrate", "worker", "create", "serve"],
  },
  json: {
    type: "boolean",
    label: "JSON events",
    flag: "json",
    default: false,
    typeText: "boolean",
    help: "Machine-readable events on stdout, one JSON object per line",
    doc: "machine-readable events on stdout, one JSON object per line (`start`, `state`, `tool`, `tick`, `end`)",
    scope: "run",
  },
  quiet: {
    type: "boolean",
    label: "quiet",
    flag: "quiet",
    aliases: ["q"],
    default: false,
    typeText: "boolean",
    help: "Print only errors and the end summary",
    doc: "print only errors and the end summary (no phase lines, no status line)",
    scope: "run",
  },
} as const satisfies Record<string, SettingSpec>;

/** The table's type, key by key. */
export type SettingsTable = typeof SETTINGS;
/** A setting's name. */
export type RunSettingKey = keyof SettingsTable;

type ValueOf<S> = S extends { choices: readonly (infer C)[] }
  ? C
  : S extends { type: "number" | "integer" }
    ? number
    : S extends { type: "boolean" }
      ? boolean
      : S extends { type: "list" }
        ? string[]
        : string;
type Defaulted = {
  [K in RunSettingKey]: SettingsTable[K] extends { default: unknown } ? K : never;
}[RunSettingKey];

/** The merged, validated settings: a value for every setting with a default. */
export type RunSettings = { [K in Defaulted]: ValueOf<SettingsTable[K]> } & {
  [K in Exclude<RunSettingKey, Defaulted>]?: ValueOf<SettingsTable[K]>;
};

/** The table as entries, typed loosely for generic code. */
export function settingEntries(): [RunSettingKey, SettingSpec][] {
  return Object.entries(SETTINGS) as [RunSettingKey, SettingSpec][];
}

/** The spec of one setting. */
export function specOf(key: RunSettingKey): SettingSpec {
  return SETTINGS[key];
}

/** yargs' camel-case key of a flag (`tick-interval` → `tickInterval`). */
export function camelCase(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The `ravenclaws.toml` sections and, for each, its keys. */
export function tomlSections(): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  for (const [, spec] of settingEntries()) {
    if (!spec.toml) continue;
    const [section = "", key = ""] = spec.toml.split(".");
    sections.set(section, [...(sections.get(section) ?? []), key]);
  }
  return sections;
}

/** The settings a heartbeat keeps (scope `heartbeat`), in the table's order. */
export function heartbeatSettingKeys(): RunSettingKey[] {
  return settingEntries()
    .filter(([, spec]) => spec.scope === "heartbeat")
    .map(([key]) => key);
}

/** The keys the user config may hold, in the table's order. */
export function userKeys(): RunSettingKey[] {
  return settingEntries()
    .filter(([, spec]) => spec.user)
    .map(([key]) => key);
}

/** The default in words: `defaultText`, else the default value, else "none". */
export function defaultTextOf(spec: SettingSpec): string {
  if (spec.defaultText !== undefined) return spec.defaultText;
  if (spec.default === undefined) return "none";
  return Array.isArray(spec.default) ? spec.default.join(",") : String(spec.default);
}

/**
 * Checks a typed value against the spec's bounds and checks; returns what is
 * wrong ("must be …"), or undefined when it is fine. Lists are checked item
 * by item; the index of the bad item is returned with the message.
 */
export function problemOf(
  spec: SettingSpec,
  value: unknown,
): { message: string; index?: number } | undefined {
  if (spec.type === "number" || spec.type === "integer") {
    const n = value as number;
    if (!Number.isFinite(n)) return { message: "must be a finite number" };
    if (spec.type === "integer" && !Number.isInteger(n))
      return { message: "must be a whole number" };
    const unit = spec.typeText.startsWith("seconds") ? " seconds" : "";
    if (spec.min !== undefined && (spec.exclusiveMin ? n <= spec.min : n < spec.min)) {
      return {
        message: spec.exclusiveMin
          ? `must be more than ${spec.min}${unit}`
          : `must be ${spec.min} or more${unit}`,
      };
    }
    if (spec.max !== undefined && n > spec.max) {
      return {
        message: `must be at most ${spec.max}${unit}${spec.maxText ? ` (${spec.maxText})` : ""}`,
      };
    }
    if (!Number.isSafeInteger(Math.trunc(n)))
      return { message: `must be at most ${Number.MAX_SAFE_INTEGER}` };
    return undefined;
  }
  if (spec.type === "string") {
    const s = value as string;
    if (spec.nonEmpty && s.trim() === "") return { message: "must not be empty" };
    if (spec.choices && !spec.choices.includes(s)) {
      const near = nearest(s, spec.choices);
      const choices = spec.choices.map((c) => `"${c}"`).join(", ");
      return {
        message: `must be one of ${choices}${near ? ` (did you mean "${near}"?)` : ""}`,
      };
    }
    if (spec.check && !spec.check.test(s)) return { message: `must ${spec.check.message}` };
    return undefined;
  }
  if (spec.type === "list" && spec.check) {
    const items = value as string[];
    const index = items.findIndex((item) => !spec.check?.test(item));
    if (index >= 0) return { message: `must ${spec.check.message}`, index };
  }
  return undefined;
}
