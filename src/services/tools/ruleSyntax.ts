/**
 * The syntax of tool modes and policy rules, with no dependencies, so that
 * the config schema can validate them without loading the tools.
 */
import type { AccessKind } from "./types.js";

/** The tool modes, loosest last. */
export const TOOL_MODES = ["read-only", "workspace-write", "full"] as const;
/** How much the tools may do. */
export type ToolMode = (typeof TOOL_MODES)[number];
/** The default mode. */
export const DEFAULT_TOOL_MODE: ToolMode = "workspace-write";

/** The rule kinds, as written in rules (`shell(…)`). */
export const ACCESS_KINDS: readonly AccessKind[] = [
  "shell",
  "read",
  "write",
  "edit",
  "fetch",
  "search",
  "browse",
];

/** One parsed rule. */
export interface Rule {
  list: "deny" | "ask" | "allow";
  /** The rule as written, for messages. */
  text: string;
  kind: AccessKind;
  /** The pattern between the parentheses; null for a bare kind (every access of that kind). */
  pattern: string | null;
}

/** What a valid rule looks like, for error messages. */
export const RULE_SYNTAX = `KIND or KIND(PATTERN) with KIND one of ${ACCESS_KINDS.join(", ")}`;

/**
 * Parses `kind(pattern)` or a bare `kind`.
 *
 * @throws Error saying what is wrong, for config messages.
 */
export function parseRule(text: string, list: Rule["list"] = "deny"): Rule {
  const trimmed = text.trim();
  const match = /^([a-z]+)(?:\(([\s\S]*)\))?$/.exec(trimmed);
  const kind = match?.[1] as AccessKind | undefined;
  if (!match || !kind || !ACCESS_KINDS.includes(kind)) {
    throw new Error(`rule ${JSON.stringify(text)} must be ${RULE_SYNTAX}`);
  }
  const pattern = match[2];
  if (pattern !== undefined && pattern.trim() === "") {
    throw new Error(
      `rule ${JSON.stringify(text)} has an empty pattern; write ${kind} alone to match everything`,
    );
  }
  return { list, text: trimmed, kind, pattern: pattern === undefined ? null : pattern.trim() };
}

/** Whether `text` is a valid rule. */
export function isRule(text: string): boolean {
  try {
    parseRule(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Splits a comma-separated list at the commas outside parentheses, braces and
 * brackets (`write(src/{a,b}/**),shell(ls)` is two rules), trimming each item
 * and dropping empty ones.
 */
export function splitList(text: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (ch === "(" || ch === "{" || ch === "[") depth += 1;
    else if ((ch === ")" || ch === "}" || ch === "]") && depth > 0) depth -= 1;
    else if (ch === "," && depth === 0) {
      items.push(text.slice(start, i));
      start = i + 1;
    }
  }
  items.push(text.slice(start));
  return items.map((item) => item.trim()).filter((item) => item !== "");
}
