/**
 * Run configuration: every key, its type and default. Values from flags, the
 * environment, `ravenclaws.toml` and the user config are merged and then
 * validated here.
 */
import { z } from "zod";

/** Default OpenAI-compatible endpoint. */
export const DEFAULT_BASE_URL = "https://api.openai.com/v1";
/** Default model. */
export const DEFAULT_MODEL = "gpt-4o-mini";

/** Heartbeat ids become file names: a safe alphabet only. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

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
});

export type RunSettings = z.infer<typeof RunSettingsSchema>;
export type RunSettingKey = keyof RunSettings;
