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

const nonNegativeInt = z.number().int().nonnegative();

/** Each run setting, validated after merging. */
export const RunSettingsSchema = z.object({
  goal: z.string().trim().min(1, "must not be empty").optional(),
  id: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
      "letters, digits, '.', '_' and '-' only (at most 128), starting with a letter or digit",
    )
    .optional(),
  tickInterval: z.number().nonnegative("must be 0 or more seconds").default(300),
  maxTicks: nonNegativeInt.default(0),
  maxIterationsPerTick: z.number().int().positive().default(5),
  maxConsecutiveFailures: z.number().int().positive().default(5),
  tools: z.boolean().default(true),
  workdir: z.string().min(1).optional(),
  stateDir: z.string().min(1).optional(),
  model: z.string().min(1).default(DEFAULT_MODEL),
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
  apiKey: z.string().min(1).optional(),
  requestTimeout: z.number().positive().default(120),
  maxRetries: nonNegativeInt.default(2),
  json: z.boolean().default(false),
});

export type RunSettings = z.infer<typeof RunSettingsSchema>;
export type RunSettingKey = keyof RunSettings;
