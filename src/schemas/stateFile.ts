/**
 * The state file `heartbeat-<id>.json` (DESIGN.md section 4), one zod schema
 * per `schemaVersion`, and the migrations to the current one. Unknown and
 * future versions are refused.
 *
 * - Version 1: the heartbeat's settings only inside the snapshot's context.
 * - Version 2: adds `settings`, the run settings the heartbeat was started (or
 *   last resumed) with, which a resume starts from.
 * - Version 3: the context gains the idle-cost state (issue 16): `quiet` (what
 *   lets the next tick skip the model), `lastTickAt`, `checklist` (tasks and
 *   their last runs) and `day` (today's usage for the daily caps); usage gains
 *   `cachedTokens`. A version 2 file reads as version 3 with none of them.
 */
import { z } from "zod";

/** The version this build writes. */
export const STATE_SCHEMA_VERSION = 3;

const UsageSchema = z.object({
  calls: z.number().int().nonnegative(),
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
  totalTokens: z.number().int().nonnegative(),
  /** Calls among `calls` whose reply had no `usage` and whose tokens are estimated; absent when none. */
  estimatedCalls: z.number().int().nonnegative().optional(),
  /** Prompt tokens the server served from its cache; absent when none were reported (version 3). */
  cachedTokens: z.number().int().nonnegative().optional(),
  /** Cost in US dollars at the configured prices, when prices are set. */
  costUsd: z.number().nonnegative().optional(),
});

// The assessment and plan are restated here rather than imported from
// schemas/llm.ts: a change to what the model is asked for must not silently
// change what version 1 of the state file accepts.
const AssessmentSchema = z.object({
  goalComplete: z.boolean(),
  actionNeeded: z.boolean(),
  assessment: z.string(),
  progressSummary: z.string(),
});

const PlanSchema = z.object({ steps: z.array(z.string()) });

const ErrorInfoSchema = z.object({
  code: z.string(),
  message: z.string(),
  fatal: z.boolean(),
  hint: z.string().optional(),
});

const DigestSchema = z.object({
  tick: z.number().int().nonnegative(),
  at: z.string(),
  outcome: z.enum(["ok", "idle", "failed"]),
  summary: z.string(),
});

const SettingsSchema = z.object({
  maxTicks: z.number().int().nonnegative(),
  tickIntervalSec: z.number().nonnegative(),
  maxIterationsPerTick: z.number().int().positive(),
  toolsEnabled: z.boolean(),
  maxConsecutiveFailures: z.number().int().positive(),
  // Added after the first files were written; absent in those.
  maxTokens: z.number().int().nonnegative().optional(),
  maxTokensPerTick: z.number().int().nonnegative().optional(),
  failureBackoffSec: z.number().nonnegative().optional(),
  cron: z.string().nullable().optional(),
  activeHours: z.string().nullable().optional(),
  timezone: z.string().nullable().optional(),
  idleRecheckSec: z.number().nonnegative().optional(),
  maxTokensPerDay: z.number().int().nonnegative().optional(),
  maxCostPerDay: z.number().nonnegative().optional(),
  prices: z
    .object({
      input: z.number().nonnegative().optional(),
      output: z.number().nonnegative().optional(),
      cachedInput: z.number().nonnegative().optional(),
    })
    .nullable()
    .optional(),
});

/**
 * `executing` marks a checkpoint taken before tool calls run (the write-ahead
 * tool journal); the others are where a heartbeat rests or ended.
 */
const StatusSchema = z.enum(["sleeping", "executing", "completed", "failed", "shutdown"]);
const OutcomeStatusSchema = z.enum(["sleeping", "completed", "failed", "shutdown"]);

/** The statechart context inside the snapshot (checked because a resume relies on it). */
export const ContextSchemaV1 = z.looseObject({
  id: z.string().min(1),
  goal: z.string(),
  createdAt: z.string(),
  settings: SettingsSchema,
  tick: z.number().int().nonnegative(),
  progress: z.string(),
  lastAssessment: AssessmentSchema.nullable(),
  lastPlan: PlanSchema.nullable(),
  lastResult: z.string().nullable(),
  completed: z.boolean(),
  nextTickAt: z.string().nullable(),
  usage: UsageSchema,
  consecutiveFailures: z.number().int().nonnegative(),
  digests: z.array(DigestSchema),
  current: z.looseObject({ number: z.number().int() }).nullable(),
  outcome: z.object({ status: OutcomeStatusSchema, reason: z.string().nullable() }).nullable(),
  error: ErrorInfoSchema.nullable(),
  seq: z.number().int().nonnegative(),
  resumed: z.boolean(),
});

/** An XState persisted snapshot of the heartbeat machine. */
export const SnapshotSchemaV1 = z.looseObject({
  status: z.enum(["active", "done", "error", "stopped"]),
  value: z.union([z.string(), z.record(z.string(), z.unknown())]),
  context: ContextSchemaV1,
  children: z.record(z.string(), z.unknown()).optional(),
});

/** State file, version 1. */
export const StateFileSchemaV1 = z.object({
  schemaVersion: z.literal(1),
  id: z.string().min(1),
  goal: z.string().min(1),
  status: StatusSchema,
  tick: z.number().int().nonnegative(),
  completed: z.boolean(),
  progress: z.string(),
  lastAssessment: AssessmentSchema.nullable(),
  lastPlan: PlanSchema.nullable(),
  lastResult: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  nextTickAt: z.string().nullable(),
  usage: UsageSchema,
  reason: z.string().nullable(),
  error: ErrorInfoSchema.nullable(),
  seq: z.number().int().nonnegative(),
  snapshot: SnapshotSchemaV1,
});

/** A state file of version 1. */
export type StateFileV1 = z.infer<typeof StateFileSchemaV1>;

/**
 * The saved settings: run setting name → value, JSON only. `null` records a
 * setting that was unset (no `--cron`, say), so a config file cannot set it
 * on resume. Never the API key. Values are checked like every other source
 * when a resume reads them (`resolveRunSettings`).
 */
export const SavedSettingsSchema = z
  .record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.string())]))
  .refine((settings) => !Object.hasOwn(settings, "apiKey"), "must never hold the API key");

/** Settings saved in a state file. */
export type SavedSettings = z.infer<typeof SavedSettingsSchema>;

/** State file, version 2: version 1 plus the saved `settings`. */
export const StateFileSchemaV2 = StateFileSchemaV1.extend({
  schemaVersion: z.literal(2),
  settings: SavedSettingsSchema,
});

const ChecklistTaskSchema = z.object({
  task: z.string().min(1),
  everySec: z.number().positive(),
  source: z.enum(["file", "model"]),
});

/** The context of a version 3 snapshot: version 1's plus the idle-cost state, each optional. */
export const ContextSchemaV3 = ContextSchemaV1.extend({
  quiet: z.object({ fingerprint: z.string(), lastCallAt: z.string() }).nullable().optional(),
  lastTickAt: z.string().nullable().optional(),
  checklist: z
    .object({ tasks: z.array(ChecklistTaskSchema), runs: z.record(z.string(), z.string()) })
    .optional(),
  day: z.object({ date: z.string(), usage: UsageSchema }).nullable().optional(),
  /**
   * The tool loop a stop left waiting for approval (its context; status
   * `shutdown`): optional like the rest, so files without it stay version 3.
   */
  parked: z
    .looseObject({
      tick: z.number().int(),
      iteration: z.number().int(),
      attempt: z.string(),
      pending: z.array(z.looseObject({ callId: z.string() })),
    })
    .nullable()
    .optional(),
});

/** State file, version 3: version 2 with the idle-cost state in the snapshot's context. */
export const StateFileSchemaV3 = StateFileSchemaV2.extend({
  schemaVersion: z.literal(3),
  snapshot: SnapshotSchemaV1.extend({ context: ContextSchemaV3 }),
});

/** The current state file format. */
export type StateFile = z.infer<typeof StateFileSchemaV3>;
export const StateFileSchema = StateFileSchemaV3;

/** A state file of version 2. */
export type StateFileV2 = z.infer<typeof StateFileSchemaV2>;

/** Version 2 → 3: nothing to convert; the idle-cost state starts empty. */
export function migrateV2(file: StateFileV2): StateFile {
  return { ...file, schemaVersion: 3 };
}

/** The heartbeat settings held in a snapshot's context (a subset in version 1 files). */
type ContextSettings = z.infer<typeof SettingsSchema>;

/**
 * The saved settings a snapshot's context implies: what a version 1 file
 * holds, under the run settings' names. Settings it does not hold (the model,
 * the tool rules…) are absent, so a resume takes them from the other sources.
 */
export function savedSettingsOfContext(settings: ContextSettings): SavedSettings {
  const saved: SavedSettings = {
    maxTicks: settings.maxTicks,
    tickInterval: settings.tickIntervalSec,
    maxIterationsPerTick: settings.maxIterationsPerTick,
    tools: settings.toolsEnabled,
    maxConsecutiveFailures: settings.maxConsecutiveFailures,
  };
  if (settings.maxTokens !== undefined) saved.maxTokens = settings.maxTokens;
  if (settings.maxTokensPerTick !== undefined) saved.maxTokensPerTick = settings.maxTokensPerTick;
  if (settings.failureBackoffSec !== undefined) saved.failureBackoff = settings.failureBackoffSec;
  if (settings.cron !== undefined) saved.cron = settings.cron;
  if (settings.activeHours !== undefined) saved.activeHours = settings.activeHours;
  if (settings.timezone !== undefined) saved.timezone = settings.timezone;
  return saved;
}

/** Version 1 → 2: the saved settings are derived from the snapshot's context. */
export function migrateV1(file: StateFileV1): StateFileV2 {
  return {
    ...file,
    schemaVersion: 2,
    settings: savedSettingsOfContext(file.snapshot.context.settings),
  };
}

/**
 * The schema that reads a state file of `version` into the current format
 * (migrating older versions), or undefined for a version this build does not know.
 */
export function stateFileSchemaFor(version: unknown): z.ZodType<StateFile> | undefined {
  if (version === 1)
    return StateFileSchemaV1.transform((file) =>
      migrateV2(migrateV1(file)),
    ) as z.ZodType<StateFile>;
  if (version === 2) return StateFileSchemaV2.transform(migrateV2) as z.ZodType<StateFile>;
  if (version === 3) return StateFileSchemaV3;
  return undefined;
}
