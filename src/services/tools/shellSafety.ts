/**
 * Shell guards: the built-in deny list of destructive commands, the split of a
 * command line into the simple commands the policy rules look at, and the
 * environment scrub for child processes.
 *
 * None of this is a sandbox: a determined command can hide what it does from
 * text patterns. It stops the obvious accidents and makes policy rules apply
 * to every part of a compound command.
 */
import { matchesWildcard } from "./wildcard.js";

/** Splits a command line at `;`, `&&`, `||`, `|`, `&`, newlines and substitutions `$(…)`/`` `…` ``. */
export function splitCommand(command: string): string[] {
  return command
    .split(/&&|\|\||[;|&\n`()]|\$\(/)
    .map((part) => part.replace(/\s+/g, " ").trim())
    .filter((part) => part !== "");
}

/** Whether the command has more than one simple command (operators, substitutions, redirections). */
export function isCompoundCommand(command: string): boolean {
  return /[;&|\n`<>]|\$\(/.test(command);
}

/** Words of a simple command with quotes and backslashes removed. */
function wordsOf(segment: string): string[] {
  return segment
    .replace(/["'\\]/g, "")
    .split(/\s+/)
    .filter((w) => w !== "");
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
function programOf(segment: string): { program: string; args: string[] } | undefined {
  const words = wordsOf(segment);
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
  for (const segment of splitCommand(flat)) {
    const parsed = programOf(segment);
    if (!parsed) continue;
    for (const rule of SEGMENT_RULES) {
      if (rule.test(parsed.program, parsed.args)) return rule.name;
    }
  }
  const unquoted = flat.replace(/["']/g, "");
  return WHOLE_RULES.find((rule) => rule.pattern.test(unquoted))?.name;
}

/** Variable names that look like they hold a secret (case-insensitive). */
export const SECRET_NAME = /KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL/i;

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
