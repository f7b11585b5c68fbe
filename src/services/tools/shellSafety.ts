/**
 * Shell guards: the built-in deny list of destructive commands, the split of a
 * command line into the simple commands the policy rules look at, and the
 * environment scrub for child processes.
 *
 * None of this is a sandbox: a determined command can hide what it does from
 * text patterns. It stops the obvious accidents and makes policy rules apply
 * to every part of a compound command.
 */
import { type ParseEntry, parse } from "shell-quote";
import { matchesWildcard } from "./wildcard.js";

/** Operators that end a simple command (`(`/`)`: subshells). */
const CONTROL_OPERATORS = new Set([";", "&&", "||", "|", "&", "|&", ";;", "(", ")"]);

/**
 * Replaces newlines outside quotes with `;` (the tokenizer takes them for
 * spaces, the shell for command separators).
 */
function separateLines(command: string): string {
  let out = "";
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < command.length; i += 1) {
    const c = command[i] as string;
    if (c === "\\" && quote !== "'") {
      out += c + (command[i + 1] ?? "");
      i += 1;
    } else if (quote) {
      if (c === quote) quote = undefined;
      out += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      out += c;
    } else {
      out += c === "\n" ? ";" : c;
    }
  }
  return out;
}

/**
 * Takes out command substitutions (`$(…)`, nested ones included, and
 * `` `…` ``), wherever they are: the shell runs them inside double quotes
 * too. Over-matching (one in single quotes) only makes the checks stricter.
 */
function takeSubstitutions(command: string): { outer: string; inner: string[] } {
  const inner: string[] = [];
  let outer = "";
  for (let i = 0; i < command.length; i += 1) {
    if (command.startsWith("$(", i)) {
      let depth = 1;
      let j = i + 2;
      for (; j < command.length && depth > 0; j += 1) {
        if (command[j] === "(") depth += 1;
        else if (command[j] === ")") depth -= 1;
      }
      inner.push(command.slice(i + 2, depth === 0 ? j - 1 : j));
      i = j - 1;
    } else if (command[i] === "`") {
      const end = command.indexOf("`", i + 1);
      inner.push(command.slice(i + 1, end === -1 ? undefined : end));
      i = end === -1 ? command.length : end;
    } else {
      outer += command[i];
    }
  }
  return { outer, inner };
}

/** Tokens of one line of shell, variables kept as written (`$HOME`). */
function tokens(command: string): ParseEntry[] {
  return parse(command, (name) => `$${name}`);
}

/**
 * The simple commands of a command line as word lists, quotes removed:
 * split at unquoted `;`, `&&`, `||`, `|`, `&`, newlines and subshell
 * parentheses by a real shell tokenizer (`shell-quote`), so an operator in
 * quotes is part of a word (`git commit -m "a; b"` is one command). The
 * commands inside substitutions follow, as commands of their own.
 */
export function simpleCommands(command: string): string[][] {
  const { outer, inner } = takeSubstitutions(command);
  const commands: string[][] = [];
  let words: string[] = [];
  const end = () => {
    if (words.length > 0) commands.push(words);
    words = [];
  };
  for (const token of tokens(separateLines(outer))) {
    if (typeof token === "string") {
      if (token !== "") words.push(token);
    } else if ("comment" in token) {
      // `# …`: the rest of the line is not run.
    } else if (token.op === "glob") {
      words.push(token.pattern);
    } else if (CONTROL_OPERATORS.has(token.op)) {
      end();
    } else {
      // A redirection (`>`, `<`, `>&`, …): kept, as the shell text has it.
      words.push(token.op);
    }
  }
  end();
  for (const sub of inner) commands.push(...simpleCommands(sub));
  return commands;
}

/** The simple commands of a command line, each as its words joined by one space (see {@link simpleCommands}). */
export function splitCommand(command: string): string[] {
  return simpleCommands(command).map((words) => words.join(" "));
}

/**
 * Whether the command is more than one simple command: an unquoted
 * operator, newline, redirection or subshell, or a substitution anywhere.
 */
export function isCompoundCommand(command: string): boolean {
  const { outer, inner } = takeSubstitutions(command);
  if (inner.length > 0) return true;
  return tokens(separateLines(outer)).some(
    (token) => typeof token !== "string" && !("comment" in token) && token.op !== "glob",
  );
}

/** Programs that run the command after them (`sudo rm …` is `rm …`). */
const WRAPPERS = new Set([
  "sudo",
  "doas",
  "env",
  "nice",
  "nohup",
  "time",
  "exec",
  "command",
  "builtin",
  "xargs",
  "busybox",
  "ionice",
  "stdbuf",
  "timeout",
]);

/** Options of sudo/doas/nice/ionice that take a value. */
const WRAPPER_ARG_OPTIONS = new Set([
  "-u",
  "-g",
  "-U",
  "-C",
  "-h",
  "-p",
  "-r",
  "-t",
  "-n",
  "-s",
  "-k",
]);

/** The program name and its arguments, past variable assignments and wrappers. */
function programOf(words: string[]): { program: string; args: string[] } | undefined {
  let i = 0;
  while (i < words.length) {
    const word = words[i] as string;
    const base = word.slice(word.lastIndexOf("/") + 1);
    if (WRAPPER_ARG_OPTIONS.has(word)) {
      // `sudo -u root rm …`: the option's value is not the program.
      i += 2;
    } else if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(word) || word.startsWith("-")) {
      i += 1;
    } else if (WRAPPERS.has(base)) {
      i += 1;
      // `timeout 10 rm …`: skip the duration too.
      if (base === "timeout" && /^\d/.test(words[i] ?? "")) i += 1;
    } else {
      return { program: base, args: words.slice(i + 1) };
    }
  }
  return undefined;
}

/** `/`, `/*`, `/.`, or a top-level directory such as `/etc` or `/home/`. */
const ROOT_OR_TOP = /^\/+(\*|\.|[^/*]+\/*\*?)?$/;
/** The home directory in its usual spellings, with or without `/` or `/*`. */
const HOME = /^(~|\$HOME|\$\{HOME\})\/*\*?$/;
/** Everything in the current directory or its parent. */
const HERE = /^(\*|\.{1,2}\/*\*?|\.\/\.\*)$/;

function hasFlag(args: string[], short: string, long: string): boolean {
  return args.some((a) => a === long || (/^-[A-Za-z]+$/.test(a) && a.slice(1).includes(short)));
}

/** Devices a write to which is harmless. */
const HARMLESS_DEVICES = /^\/dev\/(null|zero|stdout|stderr|stdin|tty|fd\/\d+)$/;

interface SegmentRule {
  name: string;
  test(program: string, args: string[]): boolean;
}

const SEGMENT_RULES: SegmentRule[] = [
  {
    name: "rm -r of /, a top-level directory, ~, * or .",
    test: (program, args) =>
      program === "rm" &&
      (hasFlag(args, "r", "--recursive") || hasFlag(args, "R", "--recursive")) &&
      (args.includes("--no-preserve-root") ||
        args.some(
          (a) => !a.startsWith("-") && (ROOT_OR_TOP.test(a) || HOME.test(a) || HERE.test(a)),
        )),
  },
  {
    name: "mkfs (formatting a filesystem)",
    test: (program) => /^(mkfs(\..+)?|mke2fs|mkswap|wipefs)$/.test(program),
  },
  {
    name: "dd onto a device",
    test: (program, args) =>
      program === "dd" &&
      args.some((a) => a.startsWith("of=/dev/") && !HARMLESS_DEVICES.test(a.slice(3))),
  },
  {
    name: "shutdown/reboot/halt/poweroff",
    test: (program, args) =>
      /^(shutdown|reboot|halt|poweroff|kexec)$/.test(program) ||
      (program === "init" && /^[06]$/.test(args[0] ?? "")) ||
      (program === "telinit" && /^[06]$/.test(args[0] ?? "")) ||
      (program === "systemctl" &&
        args.some((a) => /^(poweroff|reboot|halt|kexec|soft-reboot)$/.test(a))),
  },
  {
    name: "recursive chmod/chown of / or a top-level directory",
    test: (program, args) =>
      /^(chmod|chown|chgrp)$/.test(program) &&
      hasFlag(args, "R", "--recursive") &&
      args.some((a) => !a.startsWith("-") && (ROOT_OR_TOP.test(a) || HOME.test(a))),
  },
  {
    name: "kill every process (kill -1)",
    test: (program, args) => /^(kill|pkill)$/.test(program) && args.includes("-1"),
  },
];

interface WholeRule {
  name: string;
  pattern: RegExp;
}

const INTERPRETER = String.raw`(?:sudo\s+)?(?:env\s+)?(?:(?:ba|z|da|k|c|tc|fi)?sh|python[0-9.]*|perl|ruby|node)\b`;

const WHOLE_RULES: WholeRule[] = [
  {
    name: "fork bomb",
    pattern: /([\w:.-]+)\s*\(\s*\)\s*\{\s*\1\s*\|\s*\1\s*&?\s*;?\s*\}/,
  },
  {
    name: "download piped into a shell (curl/wget … | sh)",
    pattern: new RegExp(
      String.raw`\b(?:curl|wget|fetch)\b[^;\n]*\|\s*${INTERPRETER}|${INTERPRETER}\s+(?:-c\s+)?["']?(?:<\(|\$\(|\x60)\s*(?:curl|wget)\b`,
    ),
  },
  {
    name: "writing to a disk device (> /dev/sda …)",
    pattern:
      /(?:>|\bof=|\btee\s+(?:-a\s+)?)\s*\/dev\/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|md\d|dm-\d|mapper\/)/,
  },
];

/**
 * The name of the first destructive pattern the command matches, or
 * undefined. Checked in every tool mode; no rule can allow it.
 */
export function findDestructive(command: string): string | undefined {
  const flat = command.replace(/\\\n/g, " ");
  for (const words of simpleCommands(flat)) {
    const parsed = programOf(words);
    if (!parsed) continue;
    for (const rule of SEGMENT_RULES) {
      if (rule.test(parsed.program, parsed.args)) return rule.name;
    }
  }
  const unquoted = flat.replace(/["']/g, "");
  return WHOLE_RULES.find((rule) => rule.pattern.test(unquoted))?.name;
}

/** Variable names that look like they hold a secret (case-insensitive); a database URL holds its password. */
export const SECRET_NAME = /KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|DATABASE_URL/i;

/** Options of {@link scrubEnv}. */
export interface ScrubOptions {
  /** Secret values: any variable holding one is removed, allow-listed or not. */
  secrets?: string[];
  /** Names kept although they look secret; `*` is a wildcard (`AWS_*`). */
  allow?: string[];
}

/** Whether `value` carries one of the secrets. */
function carriesSecret(value: string, secrets: string[]): boolean {
  return secrets.some(
    (secret) =>
      secret !== "" && (value === secret || (secret.length >= 8 && value.includes(secret))),
  );
}

/**
 * The environment for a shell child: `env` without the variables that hold a
 * secret value, and without those whose name looks secret ({@link SECRET_NAME})
 * unless allow-listed.
 *
 * @returns The scrubbed copy and the names removed.
 */
export function scrubEnv(
  env: NodeJS.ProcessEnv,
  options: ScrubOptions = {},
): { env: NodeJS.ProcessEnv; removed: string[] } {
  const secrets = options.secrets ?? [];
  const allow = options.allow ?? [];
  const kept: NodeJS.ProcessEnv = {};
  const removed: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    const allowed = allow.some((pattern) => matchesWildcard(pattern, name));
    if (carriesSecret(value, secrets) || (SECRET_NAME.test(name) && !allowed)) {
      removed.push(name);
    } else {
      kept[name] = value;
    }
  }
  return { env: kept, removed };
}
