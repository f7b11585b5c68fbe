#!/usr/bin/env node
/**
 * The `ravenclaws` command line: yargs wiring, and the one place where errors
 * become messages and exit codes.
 */
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { approvalsCommand } from "./commands/approvals.js";
import { approveCommand } from "./commands/approve.js";
import { completionCommand } from "./commands/completion.js";
import { configCommand } from "./commands/config.js";
import { createCommand } from "./commands/create.js";
import { dbCommand } from "./commands/db.js";
import { demoCommand } from "./commands/demo.js";
import { denyCommand } from "./commands/deny.js";
import { diagramCommand } from "./commands/diagram.js";
import { inspectCommand } from "./commands/inspect.js";
import { logsCommand } from "./commands/logs.js";
import { migrateCommand } from "./commands/migrate.js";
import {
  type RunArgs,
  type RunEnvironment,
  runCommand,
  runHeartbeatCommand,
  runOptions,
} from "./commands/run.js";
import { serveCommand } from "./commands/serve.js";
import { showCommand } from "./commands/show.js";
import { startCommand } from "./commands/start.js";
import { statusCommand } from "./commands/status.js";
import { stopCommand } from "./commands/stop.js";
import { wakeCommand } from "./commands/wake.js";
import { workerCommand } from "./commands/worker.js";
import { ExitCode, RavenclawsError, UsageError } from "./errors.js";
import { flushed, surviveClosedOutput } from "./services/output.js";
import { didYouMean } from "./services/suggest.js";
import { settingEntries } from "./settings.js";

/** The real process as the commands see it. Two SIGINT/SIGTERMs force an exit. */
export function nodeProcessEnvironment(): RunEnvironment {
  return {
    cwd: process.cwd(),
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
    onSignal(handler) {
      let count = 0;
      const listener = (signal: NodeJS.Signals) => {
        count += 1;
        if (count > 1) {
          process.stderr.write(`ravenclaws: ${signal} received again: exiting without waiting.\n`);
          process.exit(130);
        }
        handler(signal);
      };
      process.on("SIGINT", listener);
      process.on("SIGTERM", listener);
      return () => {
        process.off("SIGINT", listener);
        process.off("SIGTERM", listener);
      };
    },
    onWake(handler) {
      const listener = () => handler();
      process.on("SIGUSR2", listener);
      return () => {
        process.off("SIGUSR2", listener);
      };
    },
  };
}

const truthy = (value: string | undefined) =>
  value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());

/** What yargs' fail handler gets as its third argument (its usage instance). */
interface UsageInstance {
  getDescriptions?: () => Record<string, unknown>;
  getCommands?: () => [string, ...unknown[]][];
}

/**
 * yargs' "Unknown argument(s): …" (the parser speaks English whatever LANG
 * says, see `locale`) with each unknown flag once, and "Did you mean …?"
 * naming the nearest option of the command being parsed or, for a word, the
 * nearest command.
 */
function explainUnknown(
  message: string,
  usage: unknown,
  argv: string[],
  commands: string[],
): string {
  const match = /^Unknown arguments?: (.+)$/.exec(message);
  if (!match?.[1]) return message;
  // yargs names each unknown flag twice (tick-intervall, tickIntervall): keep the spelling given.
  const given = match[1].split(", ");
  const kebab = (u: string) => u.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const unknowns = given.filter((u) => !/[A-Z]/.test(u) || !given.includes(kebab(u)));
  const head = `Unknown argument${unknowns.length > 1 ? "s" : ""}: ${unknowns.join(", ")}`;
  const flags = [
    ...Object.keys((usage as UsageInstance).getDescriptions?.() ?? {}),
    ...settingEntries().flatMap(([, spec]) => spec.aliases ?? []),
  ].filter((flag) => flag.length > 1);
  for (const unknown of unknowns) {
    const asFlag = argv.some((a) => a === `--${unknown}` || a.startsWith(`--${unknown}=`));
    const hint = asFlag
      ? didYouMean(unknown, flags, (f) => `--${f}`)
      : didYouMean(unknown, commands);
    if (hint) return `${head}.${hint}`;
  }
  return head;
}

/** Builds the parser. Exported for tests of the wiring. */
export function buildParser(argv: string[]) {
  const legacy =
    argv.some((a) => a === "--heartbeat" || a.startsWith("--heartbeat=")) ||
    truthy(process.env.RAVENCLAWS_HEARTBEAT);
  const commands = [
    runCommand(nodeProcessEnvironment),
    statusCommand(nodeProcessEnvironment),
    showCommand(nodeProcessEnvironment),
    logsCommand(nodeProcessEnvironment),
    stopCommand(nodeProcessEnvironment),
    startCommand(nodeProcessEnvironment),
    serveCommand(nodeProcessEnvironment),
    createCommand(nodeProcessEnvironment),
    workerCommand(nodeProcessEnvironment),
    wakeCommand(nodeProcessEnvironment),
    approvalsCommand(nodeProcessEnvironment),
    approveCommand(nodeProcessEnvironment),
    denyCommand(nodeProcessEnvironment),
    migrateCommand(nodeProcessEnvironment),
    configCommand(nodeProcessEnvironment),
    dbCommand(nodeProcessEnvironment),
    demoCommand(nodeProcessEnvironment),
    completionCommand(nodeProcessEnvironment),
    diagramCommand(nodeProcessEnvironment),
    inspectCommand(nodeProcessEnvironment),
  ];
  const commandNames = commands.map((c) => c.command.split(" ")[0] ?? c.command);
  return (
    yargs(argv)
      .scriptName("ravenclaws")
      // Messages in English whatever LANG says: explainUnknown reads them.
      .locale("en")
      .usage(
        "$0 <command> [options]\n\nA long-running autonomous agent: assess, plan, act, persist, sleep.",
      )
      .command(commands as never)
      .command({
        command: "$0",
        describe: false,
        builder: (y) => {
          const withFlag = y.option("heartbeat", {
            type: "boolean",
            describe:
              "Run a heartbeat: the Rust original's spelling of `run` (also RAVENCLAWS_HEARTBEAT=1)",
          });
          // The run options only in the legacy form: the top-level help stays a
          // short list of commands (and renders in a fraction of the time).
          return legacy ? runOptions(withFlag) : withFlag;
        },
        handler: async (args) => {
          if (args.heartbeat || truthy(process.env.RAVENCLAWS_HEARTBEAT)) {
            await runHeartbeatCommand(args as RunArgs, nodeProcessEnvironment());
            return;
          }
          throw new UsageError("No command given.", {
            code: "no-command",
            hint: 'Try `ravenclaws run --goal "…"`, or `ravenclaws --help`.',
          });
        },
      })
      .option("debug", { type: "boolean", describe: "Show stack traces of errors" })
      .parserConfiguration({ "duplicate-arguments-array": false })
      .strict()
      .recommendCommands()
      .help()
      .alias("h", "help")
      .version()
      .alias("V", "version")
      .wrap(Math.min(100, process.stdout.columns || 100))
      .fail((message, error, parser) => {
        // yargs' own validation errors (YError) are usage errors; anything else is ours.
        if (error && error.name !== "YError") throw error;
        const text = message ?? error?.message ?? "Invalid usage.";
        const suggestion = text.startsWith("Did you mean")
          ? `Unknown command. ${text}` // recommendCommands' own message
          : explainUnknown(text, parser, argv, commandNames);
        throw new UsageError(suggestion, {
          code: "usage",
          hint: "See `ravenclaws --help`.",
        });
      })
      .epilogue(
        "Exit codes: 0 completed or shut down with state saved, 1 failed, 2 bad usage or configuration, 3 state file or database schema unusable, or heartbeat already running.",
      )
  );
}

/** Formats an error for the terminal. */
export function formatError(error: unknown, debug: boolean): string {
  if (error instanceof RavenclawsError) {
    const lines = [`ravenclaws: error: ${error.message}`];
    if (error.hint) lines.push(`  ${error.hint}`);
    if (debug && error.stack) lines.push(error.stack);
    return lines.join("\n");
  }
  const message = error instanceof Error ? error.message : String(error);
  const lines = [`ravenclaws: internal error: ${message}`];
  if (error instanceof Error && error.stack) lines.push(error.stack);
  lines.push("  This is a bug; please report it with the output above.");
  return lines.join("\n");
}

/** Runs the CLI and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  // A reader that closes our stdout or stderr ends that output, not the run.
  surviveClosedOutput([process.stdout, process.stderr]);
  try {
    await buildParser(argv).parseAsync();
    return ExitCode.ok;
  } catch (error) {
    process.stderr.write(`${formatError(error, debug)}\n`);
    return error instanceof RavenclawsError ? error.exitCode : ExitCode.failed;
  }
}

const code = await main(hideBin(process.argv));
// A slow reader (`logs x | less`) gets all the output first: exiting drops what is still queued.
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
// Exit explicitly: an aborted request's keep-alive socket must not hold the process open.
process.exit(code);
