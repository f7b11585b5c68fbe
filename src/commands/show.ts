/**
 * `ravenclaws show <id>`: one heartbeat in full: state, progress, the last
 * assessment, plan and result, usage, times, and why it ended.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { StateFile } from "../schemas/stateFile.js";
import { waitingRoundOf } from "../services/awaiting.js";
import type { HeartbeatView } from "../services/heartbeats.js";
import { describeShellConfinement } from "../services/tools/sandbox/confinement.js";
import type { RunEnvironment } from "./run.js";
import { type LocationArgs, locationOptions, withPlace } from "./status.js";

/** Options of `show`. */
export interface ShowArgs extends LocationArgs {
  id: string;
  json?: boolean;
}

/**
 * The saved settings that differ from their defaults, as the flags that set
 * them (`--max-ticks 3 --cron "0 0 1 1 *"`): what a bare `run --id` resumes with.
 */
export async function savedFlagsOf(saved: StateFile["settings"]): Promise<string> {
  const { heartbeatSettingKeys, specOf } = await import("../settings.js");
  const words: string[] = [];
  const shown = (v: unknown) => {
    const text = Array.isArray(v) ? v.join(",") : String(v);
    return /^[\w.,:/@*+-]+$/.test(text) ? text : JSON.stringify(text);
  };
  for (const key of heartbeatSettingKeys()) {
    const spec = specOf(key);
    const value = (saved as Record<string, unknown>)[key];
    if (!spec.flag || value === undefined || value === null) continue;
    const fallback = spec.default;
    const same = Array.isArray(value)
      ? Array.isArray(fallback)
        ? value.join(",") === fallback.join(",")
        : value.length === 0
      : value === fallback;
    if (same) continue;
    if (spec.type === "boolean") words.push(value ? `--${spec.flag}` : `--no-${spec.flag}`);
    else words.push(`--${spec.flag} ${shown(value)}`);
  }
  return words.join(" ");
}

/** The object `show --json` prints: the state file's fields without the snapshot, plus the process, settings and paths. */
export function showJson(
  view: HeartbeatView,
  state: string,
  lastRun?: Record<string, unknown>,
): Record<string, unknown> {
  const { snapshot, ...fields } = view.file ?? { snapshot: null };
  return {
    id: view.id,
    state,
    ...fields,
    awaitingApproval: waitingRoundOf(view.file)?.pending ?? [],
    settings: snapshot?.context.settings ?? null,
    savedSettings: view.file?.settings ?? null,
    checklist: checklistOf(snapshot?.context ?? null),
    today: snapshot?.context.day ?? null,
    shell: lastRun?.shell ?? null,
    process: view.process,
    files: {
      stateFile: view.paths.stateFile,
      journal: view.paths.journal,
      lock: view.paths.lock,
    },
  };
}

/** The checklist tasks a snapshot's context knows, with their last run and next due time (null = due now). */
export function checklistOf(context: Record<string, unknown> | null): Array<{
  task: string;
  everySec: number;
  source: string;
  lastRunAt: string | null;
  nextDueAt: string | null;
}> {
  const checklist = context?.checklist as
    | {
        tasks: Array<{ task: string; everySec: number; source: string }>;
        runs: Record<string, string>;
      }
    | undefined;
  if (!checklist) return [];
  return checklist.tasks.map((t) => {
    const last = checklist.runs[t.task] ?? null;
    return {
      ...t,
      lastRunAt: last,
      nextDueAt: last ? new Date(Date.parse(last) + t.everySec * 1000).toISOString() : null,
    };
  });
}

const indent = (text: string, prefix = "  ") =>
  text
    .split("\n")
    .map((line) => (line ? prefix + line : line))
    .join("\n");

/** The human-readable form of `show`. */
export async function renderShow(
  view: HeartbeatView,
  now: number = Date.now(),
  lastRun?: Record<string, unknown>,
): Promise<string> {
  const hb = await import("../services/heartbeats.js");
  const { file, paths } = view;
  const lines: string[] = [];
  const field = (name: string, value: string) => lines.push(`${`${name}:`.padEnd(12)}${value}`);
  field("heartbeat", view.id);
  field("state", hb.describeState(view));
  if (!file) {
    if (view.database) {
      field("goal", view.database.goal);
      field("created", hb.formatDateTime(view.database.createdAt));
    }
    field("state file", `${paths.stateFile} (not written yet: the first tick has not finished)`);
    return `${lines.join("\n")}\n`;
  }
  const settings = file.snapshot.context.settings;
  field("goal", file.goal);
  field(
    "tick",
    settings.maxTicks > 0 ? `${file.tick} of at most ${settings.maxTicks}` : `${file.tick}`,
  );
  if (file.nextTickAt) {
    const next = hb.formatNextTick(file.nextTickAt, now);
    field(
      "next tick",
      view.database
        ? view.database.stoppedAt
          ? `${hb.formatDateTime(file.nextTickAt)} (when started with \`ravenclaws start ${view.id}\`)`
          : `${next} (a worker takes it)`
        : view.process.running
          ? next
          : `${hb.formatDateTime(file.nextTickAt)} (when resumed with \`ravenclaws run --id ${view.id}\`)`,
    );
  }
  field(
    "tokens",
    `${hb.formatCount(file.usage.totalTokens)} in ${hb.formatCount(file.usage.calls)} model call${file.usage.calls === 1 ? "" : "s"} (prompt ${hb.formatCount(file.usage.promptTokens)}, completion ${hb.formatCount(file.usage.completionTokens)})${
      file.usage.cachedTokens
        ? `; ${hb.formatCount(file.usage.cachedTokens)} prompt tokens cached (${Math.round((file.usage.cachedTokens / Math.max(1, file.usage.promptTokens)) * 100)}%)`
        : ""
    }${
      file.usage.estimatedCalls
        ? `; ${hb.formatCount(file.usage.estimatedCalls)} estimated (the server sent no usage)`
        : ""
    }${file.usage.costUsd !== undefined ? `; $${file.usage.costUsd}` : ""}`,
  );
  const day = file.snapshot.context.day;
  const perDay = [
    settings.maxTokensPerDay ? `${hb.formatCount(settings.maxTokensPerDay)} tokens` : "",
    settings.maxCostPerDay ? `$${settings.maxCostPerDay}` : "",
  ].filter(Boolean);
  if (day || perDay.length > 0) {
    field(
      "today",
      `${day ? `${hb.formatCount(day.usage.totalTokens)} tokens on ${day.date}` : "nothing yet"}${
        perDay.length > 0 ? ` (cap ${perDay.join(", ")} a day)` : ""
      }${file.status === "sleeping" && file.reason === "daily-budget" ? "; daily budget reached: sleeping until the next day starts" : ""}`,
    );
  }
  field("created", hb.formatDateTime(file.createdAt));
  field("updated", hb.formatDateTime(file.updatedAt));
  if (file.reason) field("reason", file.reason);
  if (view.database?.stoppedAt && file.status !== "completed" && file.status !== "failed") {
    field(
      "stopped",
      `${hb.formatDateTime(view.database.stoppedAt)}, on purpose: no worker runs it until \`ravenclaws start ${view.id}\``,
    );
  }
  const waiting = hb.waitingRoundOf(file);
  for (const call of waiting?.pending ?? []) {
    field(
      "awaiting",
      `${call.tool} wants to ${hb.clip(call.what, 120)} (ask rule "${call.rule}", call ${call.callId}, since ${hb.formatDateTime(call.since)}): ravenclaws approve ${view.id} --call ${call.callId}`,
    );
  }
  field("saved", (await savedFlagsOf(file.settings)) || "the defaults");
  if (lastRun?.shell) field("shell", describeShellConfinement(lastRun.shell));
  field("state file", paths.stateFile);
  field("journal", paths.journal);
  if (view.process.running) {
    field(
      "process",
      `pid ${view.process.pid} on ${view.process.host}, since ${hb.formatDateTime(view.process.since)}`,
    );
  } else if (file.status === "sleeping" && !view.database) {
    lines.push(
      "",
      `No process runs it: it ended without saving a final state (killed or crashed). Resume it with \`ravenclaws run --id ${view.id}\`.`,
    );
  }
  if (file.error) {
    lines.push("", `Error (${file.error.code}):`, indent(file.error.message));
    if (file.error.hint) lines.push(indent(file.error.hint));
  }
  lines.push("", "Progress:", indent(file.progress || "(none yet)"));
  const a = file.lastAssessment;
  if (a) {
    lines.push(
      "",
      `Last assessment (goal complete: ${a.goalComplete ? "yes" : "no"}, action needed: ${a.actionNeeded ? "yes" : "no"}):`,
      indent(a.assessment),
    );
  }
  if (file.lastPlan) {
    lines.push("", "Last plan:");
    file.lastPlan.steps.forEach((step, i) => {
      lines.push(`  ${i + 1}. ${step}`);
    });
  }
  if (file.lastResult) lines.push("", "Last result:", indent(file.lastResult));
  const tasks = checklistOf(file.snapshot.context);
  if (tasks.length > 0) {
    const { formatDuration } = await import("../services/duration.js");
    lines.push("", "Checklist tasks:");
    for (const t of tasks) {
      const due = t.nextDueAt ? `next due ${t.nextDueAt}` : "due now";
      const by = t.source === "model" ? ", added by the model" : "";
      lines.push(`  ${t.task} · every ${formatDuration(t.everySec)}${by} · ${due}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** `show`'s yargs module, bound to the process it runs in. */
export function showCommand(environment: () => RunEnvironment) {
  return {
    command: "show <id>",
    describe:
      "Show one heartbeat: state, progress, last assessment, plan and result, usage, shell confinement",
    builder: (yargs: Argv) =>
      locationOptions(yargs)
        .positional("id", { type: "string", describe: "The heartbeat id", demandOption: true })
        .option("json", {
          type: "boolean",
          describe:
            "Print JSON: the state file's fields (without the snapshot), shell confinement, process and paths",
        })
        .example("$0 show my-heartbeat", "everything about one heartbeat")
        .example("$0 show my-heartbeat --json | jq .lastPlan", "one field, for scripts"),
    handler: async (argv: ArgumentsCamelCase<ShowArgs>) => {
      const io = environment();
      const hb = await import("../services/heartbeats.js");
      const id = hb.checkId(String(argv.id));
      await withPlace(argv, io, async (place) => {
        const view = await place.view(id);
        const lastRun = await place.lastRunRecord(id);
        if (argv.json) {
          io.stdout.write(
            `${JSON.stringify(showJson(view, hb.describeState(view), lastRun), null, 2)}\n`,
          );
        } else {
          io.stdout.write(await renderShow(view, Date.now(), lastRun));
        }
      });
    },
  };
}
