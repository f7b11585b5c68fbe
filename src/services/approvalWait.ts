/**
 * The wait of the tool loop's `awaitingApproval` state: polls the injected
 * {@link DecisionSource} (the decision files by default, fs.watch alone
 * misses events on some file systems; the database's decisions table for a worker), races the
 * terminal prompt when there is one, applies `--ask-timeout` with its
 * fallback, and journals every decision before it removes its file, so a
 * decision survives a crash at any point: the journal is read first on the
 * next wait for the same round.
 */
import * as os from "node:os";
import type {
  ApprovalDecision,
  AwaitApprovalInput,
  AwaitApprovalOutput,
  PendingApproval,
} from "../machines/toolLoop.types.js";
import { type DecisionSource, fileDecisions, toApprovalDecision } from "./approvals.js";
import type { HeartbeatStore, JournalEntry } from "./store/index.js";
import type { AskOperator } from "./tools/prompt.js";

/** Options of {@link waitForDecisions} (see `ApprovalOptions` in the runtime). */
export interface WaitOptions {
  timeoutSec: number | null;
  fallback: "deny" | "allow";
  ask?: AskOperator | undefined;
  pollMs?: number;
}

/** What {@link waitForDecisions} needs. */
export interface WaitRequest {
  input: AwaitApprovalInput;
  /** The heartbeat's id (its decision files). */
  id: string;
  /** The heartbeat's goal, for the `approval-needed` event. */
  goal?: string;
  signal: AbortSignal;
  store: Pick<HeartbeatStore, "append" | "readJournal" | "paths">;
  /** Where the operator's decisions arrive; default the decision files beside the store's state files. */
  decisions?: DecisionSource | undefined;
  now: () => number;
  options: WaitOptions;
  events?:
    | {
        approvalNeeded?(
          pending: PendingApproval[],
          tick: number,
          again: boolean,
          heartbeat: { id: string; goal: string },
        ): void;
        approvalDecided?(decision: ApprovalDecision, call: PendingApproval): void;
      }
    | undefined;
}

/** This process as a decider: user name and pid. */
export function currentDecider(): { user: string; pid: number } {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    user = process.env.USER ?? process.env.LOGNAME ?? `uid ${process.getuid?.() ?? "?"}`;
  }
  return { user, pid: process.pid };
}

const sameRound = (entry: JournalEntry, input: AwaitApprovalInput) =>
  entry.attempt === input.attempt && entry.iteration === input.iteration;

/** Sleeps `ms`, or less when `signal` aborts. */
const pause = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

/**
 * Waits until every pending call of the round is decided, and returns the
 * decisions in the order of the calls. An abort (the machine left the state)
 * ends the wait with the decisions so far.
 */
export async function waitForDecisions(request: WaitRequest): Promise<AwaitApprovalOutput> {
  const { input, id, signal, store, now, options, events } = request;
  const decisions = request.decisions ?? fileDecisions(store.paths.stateDir);
  const decided = new Map<string, ApprovalDecision>();

  // What the journal already holds for this round (a restore after a crash or a stop).
  let announced = false;
  for (const entry of await store.readJournal()) {
    if (!sameRound(entry, input)) continue;
    if (entry.type === "approval-needed") announced = true;
    if (entry.type === "approval" && typeof entry.callId === "string") {
      decided.set(entry.callId, {
        callId: entry.callId,
        decision: entry.decision === "approve" ? "approve" : "deny",
        reason: typeof entry.reason === "string" ? entry.reason : null,
        via: (entry.via as ApprovalDecision["via"]) ?? "command",
        by: (entry.by as ApprovalDecision["by"]) ?? null,
        at: String(entry.at ?? ""),
      });
    }
  }
  if (!announced) {
    await store.append([
      {
        type: "approval-needed",
        tick: input.tick,
        attempt: input.attempt,
        iteration: input.iteration,
        at: new Date(now()).toISOString(),
        calls: input.pending.map(({ callId, tool, rule, what, since }) => ({
          callId,
          tool,
          rule,
          what,
          since,
        })),
      },
    ]);
  }
  events?.approvalNeeded?.(
    input.pending.filter((p) => !decided.has(p.callId)),
    input.tick,
    announced,
    { id, goal: request.goal ?? "" },
  );

  const settle = async (call: PendingApproval, decision: ApprovalDecision) => {
    if (decided.has(call.callId)) return;
    decided.set(call.callId, decision);
    await store.append([
      {
        type: "approval",
        tick: input.tick,
        attempt: input.attempt,
        iteration: input.iteration,
        callId: call.callId,
        tool: call.tool,
        rule: call.rule,
        decision: decision.decision,
        reason: decision.reason,
        via: decision.via,
        by: decision.by,
        at: decision.at,
      },
    ]);
    events?.approvalDecided?.(decision, call);
  };
  const undecided = () => input.pending.filter((p) => !decided.has(p.callId));

  // The terminal prompt, one question at a time; a decision from elsewhere cancels its question.
  let asking: { callId: string; controller: AbortController } | null = null;
  const prompting = (async () => {
    const ask = options.ask;
    if (!ask) return;
    for (const call of input.pending) {
      if (signal.aborted) return;
      if (decided.has(call.callId)) continue;
      const controller = new AbortController();
      asking = { callId: call.callId, controller };
      const yes = await ask(
        `${call.tool} wants to ${call.what} (rule ask "${call.rule}"). Allow? (or \`ravenclaws approve ${id}\` from anywhere)`,
        AbortSignal.any([signal, controller.signal]),
      ).catch(() => false);
      asking = null;
      if (controller.signal.aborted || signal.aborted) continue;
      await settle(call, {
        callId: call.callId,
        decision: yes ? "approve" : "deny",
        reason: yes ? null : "answered no at the terminal",
        via: "terminal",
        by: currentDecider(),
        at: new Date(now()).toISOString(),
      });
    }
  })();

  const deadline =
    options.timeoutSec !== null && options.timeoutSec > 0
      ? Math.min(...input.pending.map((p) => Date.parse(p.since))) + options.timeoutSec * 1000
      : null;
  const pollMs = options.pollMs ?? 250;
  try {
    while (!signal.aborted && undecided().length > 0) {
      const stored = await decisions.read(id).catch(() => []);
      for (const call of undecided()) {
        const found = stored.find(
          (d) =>
            d.callId === call.callId &&
            d.attempt === input.attempt &&
            d.iteration === input.iteration,
        );
        if (found) await settle(call, toApprovalDecision(found));
      }
      if (deadline !== null && now() >= deadline) {
        for (const call of undecided()) {
          await settle(call, {
            callId: call.callId,
            decision: options.fallback === "allow" ? "approve" : "deny",
            reason: `nobody answered within ${options.timeoutSec} s (--ask-timeout); --ask-fallback ${options.fallback}`,
            via: "timeout",
            by: null,
            at: new Date(now()).toISOString(),
          });
        }
      }
      const current = asking as { callId: string; controller: AbortController } | null;
      if (current && decided.has(current.callId)) current.controller.abort();
      if (undecided().length === 0) break;
      await pause(
        deadline === null ? pollMs : Math.max(1, Math.min(pollMs, deadline - now())),
        signal,
      );
    }
  } finally {
    const current = asking as { callId: string; controller: AbortController } | null;
    current?.controller.abort();
  }
  if (!signal.aborted) await prompting;
  // Journaled: the inbox has served its purpose.
  await Promise.all(
    input.pending.map((p) =>
      decisions.remove(id, {
        attempt: input.attempt,
        iteration: input.iteration,
        callId: p.callId,
      }),
    ),
  );
  return {
    decisions: input.pending
      .map((p) => decided.get(p.callId))
      .filter((d): d is ApprovalDecision => d !== undefined),
  };
}

/**
 * Passes the runtime's `approvalNeeded` to the notifier (`approval-needed`,
 * with the calls and the approve command), except for a restored wait whose
 * calls were announced before.
 */
export function notifyApprovalNeeded(
  notifying: {
    approvalNeeded(
      heartbeat: { id: string; goal: string; tick: number },
      pending: Array<{
        callId: string;
        tool: string;
        arguments: string;
        rule: string | null;
        since: string;
      }>,
    ): void;
  },
  pending: PendingApproval[],
  tick: number,
  again: boolean,
  heartbeat: { id: string; goal: string },
): void {
  if (again || pending.length === 0) return;
  notifying.approvalNeeded(
    // Ticks finished: the calls belong to the tick in progress.
    { ...heartbeat, tick: tick - 1 },
    pending.map(({ callId, tool, arguments: args, rule, since }) => ({
      callId,
      tool,
      arguments: args.length > 2_000 ? `${args.slice(0, 2_000)}…` : args,
      rule,
      since,
    })),
  );
}
