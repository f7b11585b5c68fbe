/**
 * Reading and checking request bodies: a size limit, JSON only, and the
 * create request checked field by field with the CLI's own schema (the
 * settings table's zod fields), so a bad value is refused with the field's
 * name before the host sees it.
 */
import type { IncomingMessage } from "node:http";
import type { ZodType } from "zod";
import { fieldSchema } from "../schemas/config.js";
import { didYouMean } from "../services/suggest.js";
import {
  GOAL_MAX_BYTES,
  heartbeatSettingKeys,
  type RunSettingKey,
  SETTINGS,
  type SettingSpec,
  settingEntries,
} from "../settings.js";

/** An error the API answers with a 4xx (or 5xx) and `{ error: { code, message, field? } }`. */
export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "ApiRequestError";
  }
}

/** The largest request body accepted (64 KB: a 16 KB goal and every setting fit). */
export const MAX_BODY_BYTES = 64 * 1024;

/** Reads a request body up to `limit` bytes; more is a 413 and the rest is not read. */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.on("error", (error) => {
      if (done) return;
      done = true;
      reject(error);
    });
  });
}

function tooLarge(limit: number): ApiRequestError {
  return new ApiRequestError(
    413,
    "payload-too-large",
    `The request body is larger than ${limit / 1024} KB.`,
  );
}

/** Parses a body as a JSON object; an empty body is `{}`. */
export function parseJsonObject(text: string): Record<string, unknown> {
  if (text.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ApiRequestError(
      400,
      "bad-json",
      `The request body is not valid JSON: ${(error as Error).message}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiRequestError(400, "bad-request", "The request body must be a JSON object.");
  }
  return value as Record<string, unknown>;
}

/** What `POST /api/heartbeats` asks for, checked. */
export interface CheckedCreateRequest {
  goal: string;
  id?: string;
  workdir?: string;
  /** Heartbeat-scoped settings by the settings table's names, typed and checked. */
  settings: Record<string, unknown>;
}

const fieldSchemas = new Map<RunSettingKey, ZodType>();
function schemaOf(key: RunSettingKey): ZodType {
  let schema = fieldSchemas.get(key);
  if (!schema) {
    schema = fieldSchema(SETTINGS[key] as SettingSpec);
    fieldSchemas.set(key, schema);
  }
  return schema;
}

/** Checks one field with the settings table's zod field; the field's name is in the error. */
function checkField(key: RunSettingKey, value: unknown): unknown {
  if (value === undefined) return undefined;
  const spec = SETTINGS[key] as SettingSpec;
  if (value === null && spec.default === undefined) return null;
  const result = schemaOf(key).safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? `${key}[${issue.path.join(".")}]` : key;
    throw new ApiRequestError(
      400,
      "invalid-setting",
      `${where} ${issue?.message ?? "is not valid"} (${spec.typeText}).`,
      key,
    );
  }
  return result.data;
}

/** Fields of the create request besides the heartbeat-scoped settings. */
const OWN_FIELDS = ["goal", "id", "workdir"] as const;

/**
 * Checks a create request: `goal` (required, ≤ 16 KB), `id`, `workdir`, and
 * any heartbeat-scoped setting under its name in the settings table. Unknown
 * names get the nearest known one; run-scoped settings and the API key are
 * refused.
 */
export function checkCreateRequest(body: Record<string, unknown>): CheckedCreateRequest {
  const allowed = new Set<string>([...OWN_FIELDS, ...heartbeatSettingKeys()]);
  for (const key of Object.keys(body)) {
    if (allowed.has(key)) continue;
    if (key === "apiKey") {
      throw new ApiRequestError(
        400,
        "secret-refused",
        "apiKey cannot be given per heartbeat: the API key is the server's (its --api-key, environment or user config) and is never stored with a heartbeat.",
        key,
      );
    }
    if (Object.hasOwn(SETTINGS, key)) {
      throw new ApiRequestError(
        400,
        "not-a-heartbeat-setting",
        `${key} is a setting of one command run, not of a heartbeat; it cannot be set here.`,
        key,
      );
    }
    const hint = didYouMean(key, [...allowed]);
    throw new ApiRequestError(400, "unknown-setting", `Unknown setting ${key}.${hint}`, key);
  }
  if (body.goal === undefined || body.goal === null) {
    throw new ApiRequestError(400, "goal-required", "goal is required.", "goal");
  }
  const goal = checkField("goal", body.goal) as string;
  if (Buffer.byteLength(goal) > GOAL_MAX_BYTES) {
    throw new ApiRequestError(
      400,
      "invalid-setting",
      `goal is longer than ${GOAL_MAX_BYTES / 1024} KB.`,
      "goal",
    );
  }
  const id = checkField("id", body.id) as string | undefined;
  let workdir: string | undefined;
  if (body.workdir !== undefined) {
    if (typeof body.workdir !== "string" || body.workdir.trim() === "") {
      throw new ApiRequestError(
        400,
        "invalid-setting",
        "workdir must be a non-empty path.",
        "workdir",
      );
    }
    workdir = body.workdir;
  }
  const settings: Record<string, unknown> = {};
  for (const key of heartbeatSettingKeys()) {
    if (!Object.hasOwn(body, key)) continue;
    const value = checkField(key, body[key]);
    if (value !== undefined) settings[key] = value;
  }
  return { goal, ...(id ? { id } : {}), ...(workdir ? { workdir } : {}), settings };
}

/** The setting a CLI option names (`--tick-interval` → `tickInterval`), for error fields. */
export function settingOfOption(option: string | undefined): string | undefined {
  if (!option) return undefined;
  const flag = option.replace(/^--?/, "");
  for (const [key, spec] of settingEntries()) {
    if (spec.flag === flag || spec.aliases?.includes(flag)) return key;
  }
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
