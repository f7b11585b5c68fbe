/**
 * The tool policy: a mode (`read-only`, `workspace-write`, `full`) and
 * `deny` / `ask` / `allow` rules such as `shell(npm test*)` or `write(src/**)`,
 * evaluated deny first, then ask, then allow, then the mode's default.
 */
import path from "node:path";
import picomatch from "picomatch";
import { resolveInWorkspace, toWorkspacePath } from "./pathJail.js";
import { DEFAULT_TOOL_MODE, parseRule, type Rule, type ToolMode } from "./ruleSyntax.js";
import { isCompoundCommand, splitCommand } from "./shellSafety.js";
import type { AccessKind, AccessRequest, ToolContext } from "./types.js";
import { matchesWildcard } from "./wildcard.js";

export {
  ACCESS_KINDS,
  DEFAULT_TOOL_MODE,
  parseRule,
  type Rule,
  TOOL_MODES,
  type ToolMode,
} from "./ruleSyntax.js";

/** What each mode allows when no rule decides. */
const MODE_DEFAULTS: Record<ToolMode, Record<AccessKind, boolean>> = {
  "read-only": {
    read: true,
    fetch: true,
    search: true,
    browse: true,
    write: false,
    edit: false,
    shell: false,
  },
  "workspace-write": {
    read: true,
    fetch: true,
    search: true,
    browse: true,
    write: true,
    edit: true,
    shell: true,
  },
  full: {
    read: true,
    fetch: true,
    search: true,
    browse: true,
    write: true,
    edit: true,
    shell: true,
  },
};

/** The policy settings (`[tools]` in ravenclaws.toml). */
export interface PolicyConfig {
  mode?: ToolMode;
  deny?: string[];
  ask?: string[];
  allow?: string[];
}

/**
 * A call refused by the policy (mode, rule, built-in deny list, operator).
 * The message is written for the model.
 */
export class PolicyRefusal extends Error {
  /** What refused it: `deny "shell(rm *)"`, `mode read-only`, `deny-list: fork bomb`. */
  readonly rule: string;
  constructor(message: string, rule: string) {
    super(message);
    this.name = "PolicyRefusal";
    this.rule = rule;
  }
}

/** What a rule is matched against. */
export interface Subject {
  kind: AccessKind;
  /**
   * The names the target goes by: for paths the workspace-relative path as
   * given and as resolved (symlinks followed; absolute when outside); for
   * shell the command; for fetch and browse the host name; for search the query.
   */
  names: string[];
}

/** The outcome of {@link Policy.decide}. */
export interface Verdict {
  verdict: "allow" | "deny" | "ask";
  /** The rule that decided, or null when the mode's default did. */
  rule: Rule | null;
}

function pathMatcher(pattern: string): (name: string) => boolean {
  const normalized = pattern.startsWith("./") ? pattern.slice(2) : pattern;
  return picomatch(normalized, { dot: true });
}

/** A compiled policy. */
export class Policy {
  readonly mode: ToolMode;
  private readonly rules: { rule: Rule; test: (subject: Subject) => boolean }[];

  /** @throws Error for an invalid rule. */
  constructor(config: PolicyConfig = {}) {
    this.mode = config.mode ?? DEFAULT_TOOL_MODE;
    const lists: Rule["list"][] = ["deny", "ask", "allow"];
    this.rules = lists.flatMap((list) =>
      (config[list] ?? []).map((text) => {
        const rule = parseRule(text, list);
        return { rule, test: compileRule(rule) };
      }),
    );
  }

  /** Decides one access: deny rules, then ask rules, then allow rules, then the mode. */
  decide(subject: Subject): Verdict {
    for (const list of ["deny", "ask", "allow"] as const) {
      const hit = this.rules.find(
        ({ rule, test }) => rule.list === list && rule.kind === subject.kind && test(subject),
      );
      if (hit) return { verdict: list, rule: hit.rule };
    }
    return { verdict: MODE_DEFAULTS[this.mode][subject.kind] ? "allow" : "deny", rule: null };
  }

  /**
   * Whether a tool of this kind can ever succeed: the mode allows the kind,
   * or some allow or ask rule of the kind exists.
   */
  offers(kind: AccessKind): boolean {
    return (
      MODE_DEFAULTS[this.mode][kind] ||
      this.rules.some(({ rule }) => rule.kind === kind && rule.list !== "deny")
    );
  }
}

/** Turns a rule into a test on subjects of its kind. */
function compileRule(rule: Rule): (subject: Subject) => boolean {
  const pattern = rule.pattern;
  if (pattern === null || pattern === "*" || pattern === "**") return () => true;
  switch (rule.kind) {
    case "shell": {
      const literal = !/[*?]/.test(pattern);
      const matches = (text: string) => matchesWildcard(pattern, text);
      return (subject) =>
        subject.names.some((command) => {
          const flat = command.replace(/\s+/g, " ").trim();
          // deny and ask look at every simple command too: `ls; rm -r x` is caught by `rm *`.
          if (rule.list !== "allow") return matches(flat) || splitCommand(command).some(matches);
          // An allow pattern with wildcards must not approve whatever is chained after it.
          return matches(flat) && (literal || !isCompoundCommand(command));
        });
    }
    case "fetch":
    case "browse":
    case "search":
      // Host names and queries compare without case.
      return (subject) => subject.names.some((name) => matchesWildcard(pattern, name, true));
    default: {
      const matches = pathMatcher(pattern);
      return (subject) => subject.names.some(matches);
    }
  }
}

/**
 * The names a target goes by, for matching rules. Path targets are resolved
 * in the sandbox (so a refusal for confinement comes first).
 */
export async function subjectOf(access: AccessRequest, ctx: ToolContext): Promise<Subject> {
  switch (access.kind) {
    case "shell":
      return { kind: "shell", names: [access.target] };
    case "search":
      return { kind: "search", names: [access.target.replace(/\s+/g, " ").trim()] };
    case "fetch":
    case "browse": {
      let host: string;
      try {
        host = new URL(access.target).hostname.replace(/^\[|\]$/g, "").replace(/\.$/, "");
      } catch {
        host = access.target;
      }
      return { kind: access.kind, names: [host.toLowerCase()] };
    }
    default: {
      const real = await resolveInWorkspace(ctx, access.target, {
        write: access.kind !== "read",
      });
      const lexical = path.resolve(ctx.workdir, access.target);
      const names = [toWorkspacePath(ctx, lexical), toWorkspacePath(ctx, real)];
      return { kind: access.kind, names: [...new Set(names)] };
    }
  }
}

/** The phrase for an access in questions and messages (`write src/a.ts`). */
export function describeAccess(access: AccessRequest, subject: Subject): string {
  switch (access.kind) {
    case "shell":
      return `run the shell command: ${access.target}`;
    case "fetch":
      return `fetch ${access.target}`;
    case "browse":
      return `open ${access.target} in the browser`;
    case "search":
      return `search the web for ${JSON.stringify(access.target)}`;
    default:
      return `${access.kind} ${subject.names.at(-1) ?? access.target}`;
  }
}
