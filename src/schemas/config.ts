/**
 * Run configuration: every key, its type and default. Values from flags, the
 * environment, `ravenclaws.toml` and the user config are merged and then
 * validated here.
 */
import { z } from "zod";
import {
  DEFAULT_TOOL_MODE,
  isRule,
  RULE_SYNTAX,
  TOOL_MODES,
} from "../services/tools/ruleSyntax.js";

/** How `shell_exec` is confined (`--sandbox`): see README, Confinement. */
export const SANDBOX_MODES = ["auto", "bwrap", "off"] as const;
/** One of {@link SANDBOX_MODES}. */
export type SandboxMode = (typeof SANDBOX_MODES)[number];

/** Default OpenAI-compatible endpoint. */
export const DEFAULT_BASE_URL = "https://api.openai.com/v1";
/** Default model. */
export const DEFAULT_MODEL = "gpt-4o-mini";

/** Heartbeat ids become file names: a safe alphabet only. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** `HH:MM-HH:MM`, 24-hour clock; the end may be before the start (a window over midnight). */
export const ACTIVE_HOURS_PATTERN = /^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$/;

/** True for a time zone name the runtime knows (IANA, or UTC). */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** Policy rules such as `shell(npm test*)`; see the README's Tools section. */
const ruleList = z
  .array(z.string().refine(isRule, `must be rules written ${RULE_SYNTAX}`))
  .default([]);

const wholeNumber = "must be a whole number";
const nonNegativeInt = z.number().int(wholeNumber).nonnegative("must be 0 or more");
const positiveInt = z.number().int(wholeNumber).positive("must be 1 or more");

/** Each run setting, validated after merging. */
export const RunSettingsSchema = z.object({
  goal: z.string().trim().min(1, "must not be empty").optional(),
  id: z
    .string()
    .regex(
      ID_PATTERN,
      "letters, digits, '.', '_' and '-' only (at most 128), starting with a letter or digit",
    )
    .optional(),
  tickInterval: z.number().nonnegative("must be 0 or more seconds").default(300),
  maxTicks: nonNegativeInt.default(0),
  maxIterationsPerTick: positiveInt.default(5),
  maxConsecutiveFailures: positiveInt.default(5),
  tools: z.boolean().default(true),
  workdir: z.string().min(1, "must not be empty").optional(),
  stateDir: z.string().min(1, "must not be empty").optional(),
  model: z.string().min(1, "must not be empty").default(DEFAULT_MODEL),
  baseUrl: z
    .string()
    .refine((s) => {
      try {
        const u = new URL(s);
        return u.protocol === "http:" || u.protocol === "https:";
      } catch {
        return false;
      }
    }, "must be an http:// or https:// URL")
    .default(DEFAULT_BASE_URL),
  apiKey: z.string().min(1, "must not be empty").optional(),
  requestTimeout: z.number().positive("must be more than 0 seconds").default(120),
  maxRetries: nonNegativeInt.default(2),
  json: z.boolean().default(false),
  toolMode: z
    .enum(TOOL_MODES, { error: `must be one of ${TOOL_MODES.map((m) => `"${m}"`).join(", ")}` })
    .default(DEFAULT_TOOL_MODE),
  toolDeny: ruleList,
  toolAsk: ruleList,
  toolAllow: ruleList,
  allowWeb: z.boolean().default(false),
  allowedHosts: z
    .array(
      z
        .string()
        .regex(
          /^(\*\.)?[A-Za-z0-9_.-]+$|^\[?[0-9A-Fa-f:.]+\]?$/,
          "must be host names such as example.com or *.example.com (no scheme, port or path)",
        ),
    )
    .default([]),
  envAllow: z
    .array(
      z
        .string()
        .regex(/^[A-Za-z0-9_*]+$/, "must be variable names (letters, digits, _; * as a wildcard)"),
    )
    .default([]),
  shellTimeout: z.number().positive("must be more than 0 seconds").default(60),
  /** How shell_exec is confined: bubblewrap when it works (`auto`), always (`bwrap`), or not at all (`off`). */
  sandbox: z.enum(SANDBOX_MODES).default("auto"),
  /** Let sandboxed shell commands reach the network. */
  shellNetwork: z.boolean().default(false),
  maxTokens: nonNegativeInt.default(0),
  maxTokensPerTick: nonNegativeInt.default(0),
  failureBackoff: z.number().nonnegative("must be 0 or more seconds").default(5),
  cron: z.string().trim().min(1, "must not be empty").optional(),
  activeHours: z
    .string()
    .regex(ACTIVE_HOURS_PATTERN, "must be HH:MM-HH:MM, e.g. 08:00-22:00")
    .optional(),
  timezone: z
    .string()
    .refine(isTimeZone, "must be an IANA time zone such as Europe/Berlin or UTC")
    .optional(),
  priceInput: z
    .number()
    .nonnegative("must be 0 or more (US dollars per million tokens)")
    .optional(),
  priceOutput: z
    .number()
    .nonnegative("must be 0 or more (US dollars per million tokens)")
    .optional(),
});

export type RunSettings = z.infer<typeof RunSettingsSchema>;
export type RunSettingKey = keyof RunSettings;
