/**
 * What leaves the process in an inspection event: secrets redacted, large
 * strings and arrays truncated, deep nesting cut, one JSON line per event.
 */
import type { StatelyInspectionEvent } from "@statelyai/inspect";
import { noRedaction, type Redactor } from "../redact.js";

/** Longest string kept in an inspection event, in characters (the rest is cut). */
export const INSPECT_STRING_LIMIT = 2_048;
/** Most array items kept in an inspection event. */
export const INSPECT_ARRAY_LIMIT = 50;
/** Deepest nesting kept in an inspection event. */
export const INSPECT_DEPTH_LIMIT = 16;

/** The three event types of Stately's inspection format. */
export const INSPECTION_EVENT_TYPES = [
  "@xstate.actor",
  "@xstate.snapshot",
  "@xstate.event",
] as const;

/** How inspection values are cleaned before they leave the process. */
export interface SanitizeOptions {
  redact?: Redactor;
  maxString?: number;
  maxArray?: number;
  maxDepth?: number;
}

function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  // The result stays within `max`, so sanitizing twice changes nothing.
  let kept = max;
  let marker = "";
  for (let i = 0; i < 3; i++) {
    marker = `… [${text.length - kept} more characters]`;
    kept = Math.max(0, max - marker.length);
  }
  return `${text.slice(0, kept)}${marker}`;
}

/**
 * A plain JSON copy of `value`: every string redacted (before it is cut, so a
 * cut can never leave half a secret) and at most `maxString` long, arrays cut
 * to `maxArray` items, cycles and over-deep nesting replaced by markers,
 * `toJSON` honoured (actor references, dates), errors reduced to name and
 * message.
 */
export function sanitizeValue(value: unknown, options: SanitizeOptions = {}): unknown {
  const redact = options.redact ?? noRedaction;
  const maxString = options.maxString ?? INSPECT_STRING_LIMIT;
  const maxArray = options.maxArray ?? INSPECT_ARRAY_LIMIT;
  const maxDepth = options.maxDepth ?? INSPECT_DEPTH_LIMIT;
  const ancestors = new Set<object>();

  const walk = (v: unknown, depth: number): unknown => {
    switch (typeof v) {
      case "string":
        return truncate(redact(v), maxString);
      case "number":
        return Number.isFinite(v) ? v : null;
      case "boolean":
        return v;
      case "bigint":
        return v.toString();
      case "undefined":
      case "function":
      case "symbol":
        return undefined;
    }
    if (v === null) return null;
    const obj = v as object;
    if (ancestors.has(obj)) return "[Circular]";
    if (depth >= maxDepth) return "[Truncated: too deep]";
    ancestors.add(obj);
    try {
      if (obj instanceof Error) {
        const code = (obj as { code?: unknown }).code;
        return {
          name: obj.name,
          message: walk(obj.message, depth + 1),
          ...(code !== undefined ? { code: walk(code, depth + 1) } : {}),
        };
      }
      if (typeof (obj as { toJSON?: unknown }).toJSON === "function") {
        return walk((obj as { toJSON(): unknown }).toJSON(), depth);
      }
      const items = obj instanceof Set ? [...obj] : Array.isArray(obj) ? obj : null;
      if (items) {
        const out = items.slice(0, maxArray).map((item) => walk(item, depth + 1) ?? null);
        if (items.length > maxArray) out.push(`… [${items.length - maxArray} more items]`);
        return out;
      }
      const entries = obj instanceof Map ? [...obj.entries()] : Object.entries(obj);
      const out: Record<string, unknown> = {};
      for (const [key, item] of entries) {
        const clean = walk(item, depth + 1);
        if (clean !== undefined) out[redact(String(key))] = clean;
      }
      return out;
    } finally {
      ancestors.delete(obj);
    }
  };
  return walk(value, 0);
}

/**
 * Cleans one Stately inspection event for a log or the inspector: secrets
 * redacted everywhere; context, events and outputs truncated. The machine
 * `definition` of an actor event is kept whole (the inspector draws the
 * statechart from it) but redacted.
 */
export function sanitizeInspectionEvent(
  event: StatelyInspectionEvent,
  options: SanitizeOptions = {},
): StatelyInspectionEvent {
  const redact = options.redact ?? noRedaction;
  const { definition, ...rest } = event as StatelyInspectionEvent & { definition?: unknown };
  const clean = sanitizeValue(rest, options) as Record<string, unknown>;
  if (typeof definition === "string") clean.definition = redact(definition);
  return clean as unknown as StatelyInspectionEvent;
}

/** One log line (without the newline) for an inspection event. */
export function serializeInspectionEvent(
  event: StatelyInspectionEvent,
  options: SanitizeOptions = {},
): string {
  const redact = options.redact ?? noRedaction;
  // Redacting the whole line again also covers anything the event walk could not see.
  return redact(JSON.stringify(sanitizeInspectionEvent(event, options)));
}
