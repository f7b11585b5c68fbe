/**
 * `ravenclaws logs <id>`: the journal, one line per tick (tool calls folded
 * into their tick's line); `--json` prints the raw lines; `-f` follows the
 * file like `tail -f` until interrupted.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { outputClosed } from "../services/output.js";
import type { RunEnvironment } from "./run.js";
import { type LocationArgs, locationOptions, withPlace } from "./status.js";

/** Options of `logs`. */
export interface LogsArgs extends LocationArgs {
  id: string;
  follow?: boolean;
  json?: boolean;
}

type Entry = Record<string, unknown>;

import { describeShellConfinement } from "../services/tools/sandbox/confinement.js";

const str = (v: unknown) => (typeof v === "string" ? v : "");
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

/** Formats one journal entry for people; null for entries folded into their tick's line (tool calls). */
export function formatEntry(
  entry: Entry,
  helpers: typeof import("../services/heartbeats.js"),
  width = 160,
): string | null {
  const { clip, formatCount, formatDateTime } = helpers;
  const type = str(entry.type);
  // Tool calls (and their write-ahead intents) are folded into their tick's line.
  if (type === "tool" || type.startsWith("tool-")) return null;
  if (type === "tick") {
    const errors = Array.isArray(entry.errors) ? (entry.errors as Entry[]) : [];
    const tools = Array.isArray(entry.toolCalls) ? (entry.toolCalls as Entry[]) : [];
    const notOk = tools.filter((t) => t.status !== "ok").length;
    const usage = (entry.usage ?? {}) as Entry;
    const status = str(entry.status);
    const seconds = num(entry.durationMs) / 1000;
    const head = [
      `#${num(entry.tick)}`.padEnd(5),
      formatDateTime(str(entry.finishedAt) || str(entry.startedAt)),
      status.padEnd(11),
      str(entry.wakeReason).padEnd(8),
      `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`.padStart(6),
      `${formatCount(num(usage.totalTokens))} tok`.padStart(10),
      `${tools.length} tool${tools.length === 1 ? "" : "s"}${notOk ? ` (${notOk} not ok)` : ""}`.padEnd(
        7,
      ),
    ].join("  ");
    const summary =
      errors.length > 0
        ? errors.map((e) => `${str(e.phase)} failed: ${str(e.message)}`).join("; ")
        : status === "interrupted"
          ? "cut short by a stop; it runs again on resume"
          : str(entry.result) || str(entry.assessment);
    return `${head}  ${clip(summary, Math.max(30, width - head.length - 3))}`;
  }
  if (type === "end") {
    const reason = str(entry.reason);
    return `end    ${formatDateTime(str(entry.at))}  ${str(entry.status)}${reason ? ` (${reason})` : ""} at tick ${num(entry.tick)}`;
  }
  if (type === "skip") {
    return `skip   ${formatDateTime(str(entry.due))}  ${str(entry.reason) || "skipped"}; next tick at ${formatDateTime(str(entry.next))}`;
  }
  if (type === "run") {
    // How shell_exec was confined; then what the run changed in the saved settings, if anything.
    const changes = Array.isArray(entry.changes) ? (entry.changes as Entry[]) : [];
    const changed = changes
      .map((c) => `${str(c.setting)} ${JSON.stringify(c.from)} → ${JSON.stringify(c.to)}`)
      .join(", ");
    const parts = [
      entry.shell ? `shell_exec ${describeShellConfinement(entry.shell)}` : null,
      entry.continued ? `continued at tick ${num(entry.tick)}` : null,
      changed ? `changed ${changed}` : null,
    ].filter((part): part is string => part !== null);
    if (parts.length === 0) return null;
    return `run    ${formatDateTime(str(entry.at))}  ${clip(parts.join("; "), Math.max(30, width - 30))}`;
  }
  if (type === "notify" || type === "notify-failed") {
    const via = str(entry.transport) === "url" ? str(entry.target) : "--notify-command";
    const attempts = num(entry.attempts);
    const outcome =
      type === "notify"
        ? `sent${attempts > 1 ? ` (attempt ${attempts})` : ""}`
        : `NOT sent after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${str(entry.error)}`;
    return `notify ${formatDateTime(str(entry.at))}  ${str(entry.event)} to ${via}: ${clip(outcome, Math.max(30, width - 60))}`;
  }
  const { type: _type, ...rest } = entry;
  return `${(type || "?").padEnd(6)} ${clip(JSON.stringify(rest), Math.max(30, width - 8))}`;
}

export { readLines } from "../services/places.js";

/** A line printer for the journal: raw lines with `json`, else {@link formatEntry}; torn lines are skipped. */
export async function journalPrinter(
  out: NodeJS.WritableStream,
  options: { json?: boolean; width?: number } = {},
): Promise<{ onLine: (line: string) => void; printed: () => number }> {
  const hb = await import("../services/heartbeats.js");
  let printed = 0;
  const onLine = (line: string) => {
    if (outputClosed(out)) return;
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      return; // a torn line left by a crash
    }
    if (!entry || typeof entry !== "object" || Array.isArray(entry)) return;
    const text = options.json ? line : formatEntry(entry as Entry, hb, options.width);
    if (text === null) return;
    out.write(`${text}\n`);
    printed += 1;
  };
  return { onLine, printed: () => printed };
}

/** How often `-f` looks for new lines. */
export const FOLLOW_POLL_MS = 200;

/** `logs`'s yargs module, bound to the process it runs in. */
export function logsCommand(environment: () => RunEnvironment) {
  return {
    command: "logs <id>",
    describe: "Show the journal, one line per tick; -f follows it",
    builder: (yargs: Argv) =>
      locationOptions(yargs)
        .positional("id", { type: "string", describe: "The heartbeat id", demandOption: true })
        .option("follow", {
          alias: "f",
          type: "boolean",
          describe: "Keep printing new lines as they are journaled, until Ctrl-C",
        })
        .option("json", {
          type: "boolean",
          describe: "Print the journal's raw JSON lines (runs, ticks, tool calls, end)",
        })
        .example("$0 logs my-heartbeat", "one line per tick")
        .example("$0 logs my-heartbeat -f", "follow a running heartbeat")
        .example(
          "$0 logs my-heartbeat --json | jq 'select(.type==\"tick\") | .usage'",
          "for scripts",
        ),
    handler: async (argv: ArgumentsCamelCase<LogsArgs>) => {
      const io = environment();
      const hb = await import("../services/heartbeats.js");
      const id = hb.checkId(String(argv.id));
      await withPlace(argv, io, (place) => printJournal(place, id, argv, io));
    },
  };
}

/** Prints heartbeat `id`'s journal from `place`; with `follow`, new records until a signal or a closed output. */
async function printJournal(
  place: import("../services/places.js").HeartbeatPlace,
  id: string,
  argv: Pick<LogsArgs, "json" | "follow">,
  io: RunEnvironment,
): Promise<void> {
  const paths = await place.require(id);
  const width = (io.stdout as { columns?: number }).columns || 160;
  const { onLine, printed } = await journalPrinter(io.stdout, {
    json: argv.json ?? false,
    width,
  });
  const read = async (cursor: number) => {
    const next = await place.journalLines(id, cursor);
    for (const line of next.lines) onLine(line);
    return next.cursor;
  };
  let offset = await read(0);
  if (printed() === 0 && !argv.json) {
    io.stderr.write(`No ticks journaled yet in ${paths.journal}.\n`);
  }
  if (!argv.follow) return;

  await new Promise<void>((resolve, reject) => {
    let busy = false;
    const timer = setInterval(() => {
      // Nobody reads any more (`logs -f | head`): end like a finished `logs`.
      if (outputClosed(io.stdout)) {
        stop();
        resolve();
        return;
      }
      if (busy) return;
      busy = true;
      read(offset)
        .then((next) => {
          offset = next;
          busy = false;
        })
        .catch((error: unknown) => {
          stop();
          reject(error);
        });
    }, FOLLOW_POLL_MS);
    const unsubscribe = io.onSignal(() => {
      stop();
      resolve();
    });
    function stop() {
      clearInterval(timer);
      unsubscribe();
    }
  });
}
