/**
 * Pure helpers and constants that the statecharts and the services share.
 * This module has no runtime imports (types only): the store, the prompts,
 * the model adapter and the read commands use it without loading xstate or a
 * machine file (house style: services import no machine file).
 */
import type { ErrorInfo } from "../errors.js";
import type { TokenUsage } from "./heartbeat.types.js";

/** The state names, as they show in `status`, logs and the inspector. */
export const HEARTBEAT_STATES = [
  "idle",
  "observing",
  "assessing",
  "planning",
  "executing",
  "persisting",
  "sleeping",
  "completed",
  "failed",
  "shutdown",
] as const;

/**
 * Longest progress summary kept, in characters: the one part of the prompt
 * that grows with a heartbeat's history, so it bounds the prompt's growth.
 */
export const PROGRESS_LIMIT = 1000;

/** Usage of nothing. */
export const ZERO_USAGE: TokenUsage = {
  calls: 0,
  promptTokens: 0,
  completionTokens: 0,
  totalTokens: 0,
};

/** Adds two usage records. */
export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  const estimatedCalls = (a.estimatedCalls ?? 0) + (b.estimatedCalls ?? 0);
  const cachedTokens = (a.cachedTokens ?? 0) + (b.cachedTokens ?? 0);
  return {
    calls: a.calls + b.calls,
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    totalTokens: a.totalTokens + b.totalTokens,
    ...(estimatedCalls > 0 ? { estimatedCalls } : {}),
    ...(cachedTokens > 0 ? { cachedTokens } : {}),
  };
}

const isUsage = (value: unknown): value is TokenUsage =>
  typeof value === "object" &&
  value !== null &&
  ["calls", "promptTokens", "completionTokens", "totalTokens"].every(
    (key) => typeof (value as Record<string, unknown>)[key] === "number",
  );

/**
 * Normalises whatever an actor rejected with into {@link ErrorInfo}, keeping
 * the usage of an answered call so that it can be charged.
 */
export function asErrorInfo(error: unknown): ErrorInfo {
  if (typeof error === "object" && error !== null && "code" in error && "message" in error) {
    const e = error as Partial<ErrorInfo>;
    return {
      code: String(e.code),
      message: String(e.message),
      fatal: e.fatal === true,
      ...(typeof e.hint === "string" ? { hint: e.hint } : {}),
      ...(isUsage(e.usage) ? { usage: e.usage } : {}),
    };
  }
  return {
    code: "internal",
    message: error instanceof Error ? error.message : String(error),
    fatal: false,
  };
}
