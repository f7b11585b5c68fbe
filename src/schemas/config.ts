/**
 * Run configuration: the zod schema of the merged settings, built from the
 * settings table (`src/settings.ts`), which declares every key, its type,
 * default and bounds.
 */
import { type ZodType, z } from "zod";
import {
  problemOf,
  type RunSettingKey,
  type RunSettings,
  type SettingSpec,
  settingEntries,
} from "../settings.js";

export {
  ACTIVE_HOURS_PATTERN,
  DEFAULT_BASE_URL,
  DEFAULT_MODEL,
  ID_PATTERN,
  isTimeZone,
  type RunSettingKey,
  type RunSettings,
  SANDBOX_MODES,
  type SandboxMode,
} from "../settings.js";

/** The zod type of one setting's value: its base type, then the table's bounds and checks. */
export function fieldSchema(spec: SettingSpec): ZodType {
  const base =
    spec.type === "number" || spec.type === "integer"
      ? z.number({ error: "must be a number" })
      : spec.type === "boolean"
        ? z.boolean({ error: "must be true or false" })
        : spec.type === "list"
          ? z.array(z.string({ error: "must be a list of strings" }))
          : spec.trim
            ? z.string({ error: "must be a string" }).trim()
            : z.string({ error: "must be a string" });
  const checked = (base as ZodType).superRefine((value, ctx) => {
    const problem = problemOf(spec, value);
    if (problem) {
      ctx.addIssue({
        code: "custom",
        message: problem.message,
        ...(problem.index === undefined ? {} : { path: [problem.index] }),
      });
    }
  });
  return spec.default === undefined
    ? checked.optional()
    : checked.default((Array.isArray(spec.default) ? [...spec.default] : spec.default) as never);
}

/** Each run setting, validated after merging. */
export const RunSettingsSchema = z.object(
  Object.fromEntries(settingEntries().map(([key, spec]) => [key, fieldSchema(spec)])) as Record<
    RunSettingKey,
    ZodType
  >,
) as unknown as ZodType<RunSettings> & { shape: Record<RunSettingKey, ZodType> };
