/**
 * The approvals service (listing and deciding, with real files in a temp
 * state dir) and the wait of `awaitingApproval` (decision files, journal,
 * timeout, the terminal prompt's race), against the real store.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CommandFailedError, UsageError } from "../../src/errors.js";
import type { AwaitApprovalInput, PendingApproval } from "../../src/machines/toolLoop.types.js";
import {
  decideApproval,
  decisionFileOf,
  listPendingApprovals,
} from "../../src/services/approvals.js";
import { notifyApprovalNeeded, waitForDecisions } from "../../src/services/approvalWait.js";
import type { NotifyEvent } from "../../src/services/notify/event.js";
import { notifyingEvents } from "../../src/services/notify/heartbeatEvents.js";
import { FileHeartbeatStore, heartbeatPaths } from "../../src/services/store/index.js";
import { createToolbox } from "../../src/services/tools/index.js";

const ATTEMPT = "2030-01-01T00:00:00.000Z";
const CALL: PendingApproval = {
  callId: "w1",
  tool: "write_file",
  arguments: '{"path":"out.md","content":"hi"}',
  rule: "write(**)",
  what: "write out.md",
  since: "2030-01-01T00:00:05.000Z",
};
const OTHER: PendingApproval = { ...CALL, callId: "w2", what: "write b.md" };
const BY = { user: "ops", pid: 4242 };

let stateDir: string;
beforeEach(async () => {
  stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "ravenclaws-approvals-"));
});
afterEach(async () => {
  await fs.rm(stateDir, { recursive: true, force: true });
});

/** A state file checkpointed with the tool loop in `awaitingApproval` (or sleeping without `pending`). */
async function writeStateFile(id: string, pending: PendingApproval[] | null) {
  const fixture = JSON.parse(
    await fs.readFile(new URL("../fixtures/state-v2.json", import.meta.url), "utf8"),
  );
  const file = { ...fixture, id, snapshot: { ...fixture.snapshot } };
  file.snapshot.context = { ...fixture.snapshot.context, id };
  if (pending) {
    file.status = "executing";
    file.nextTickAt = null;
    file.snapshot.value = "executing";
    file.snapshot.children = {
      execute: {
        src: "execute",
        snapshot: {
          status: "active",
          value: "awaitingApproval",
          context: { tick: file.tick + 1, iteration: 1, attempt: ATTEMPT, pending },
          children: {},
        },
      },
    };
  }
  await fs.mkdir(stateDir, { recursive: true });
  await fs.writeFile(path.join(stateDir, `heartbeat-${id}.json`), JSON.stringify(file));
}

describe("listPendingApprovals / decideApproval", () => {
  it("lists every waiting call with its heartbeat, round and decision", async () => {
    await writeStateFile("a", [CALL, OTHER]);
    await writeStateFile("b", null);
    const listed = await listPendingApprovals(stateDir);
    expect(listed.map((p) => [p.id, p.callId, p.decision])).toEqual([
      ["a", "w1", null],
      ["a", "w2", null],
    ]);
    expect(listed[0]).toMatchObject({ ...CALL, attempt: ATTEMPT, iteration: 1 });
  });

  it("stores a decision for one call atomically; the listing shows it; deciding it again is refused", async () => {
    await writeStateFile("a", [CALL, OTHER]);
    const written = await decideApproval(stateDir, "a", {
      callId: "w2",
      decision: "deny",
      reason: " not now ",
      by: BY,
    });
    expect(written).toMatchObject([{ callId: "w2", decision: "deny", reason: "not now", by: BY }]);
    const file = decisionFileOf(stateDir, "a", { attempt: ATTEMPT, iteration: 1 }, "w2");
    expect(JSON.parse(await fs.readFile(file, "utf8"))).toMatchObject({ callId: "w2" });
    // No temp file left behind.
    expect(await fs.readdir(path.dirname(file))).toEqual([path.basename(file)]);
    const listed = await listPendingApprovals(stateDir);
    expect(listed.map((p) => p.decision?.decision ?? null)).toEqual([null, "deny"]);

    const again = decideApproval(stateDir, "a", { callId: "w2", decision: "approve", by: BY });
    await expect(again).rejects.toThrow(CommandFailedError);
    await expect(again).rejects.toMatchObject({ code: "already-decided" });
    // Without --call: the undecided rest.
    const rest = await decideApproval(stateDir, "a", { decision: "approve", by: BY });
    expect(rest.map((d) => d.callId)).toEqual(["w1"]);
  });

  it("clear errors: unknown id, nothing pending, unknown call id (listing the pending ones)", async () => {
    await writeStateFile("a", [CALL]);
    await writeStateFile("b", null);
    await expect(
      decideApproval(stateDir, "zz", { decision: "approve", by: BY }),
    ).rejects.toMatchObject({ code: "unknown-id" });
    await expect(
      decideApproval(stateDir, "b", { decision: "approve", by: BY }),
    ).rejects.toMatchObject({ code: "nothing-pending" });
    const unknown = decideApproval(stateDir, "a", { callId: "nope", decision: "deny", by: BY });
    await expect(unknown).rejects.toThrow(UsageError);
    await expect(unknown).rejects.toThrow(
      /no pending call "nope"\. Pending: w1 \(write_file write out\.md\)/,
    );
  });
});

describe("waitForDecisions", () => {
  const input: AwaitApprovalInput = { pending: [CALL], tick: 1, iteration: 1, attempt: ATTEMPT };
  const storeOf = (id: string) => new FileHeartbeatStore(heartbeatPaths(stateDir, id));
  const base = (
    store: FileHeartbeatStore,
    extra: Partial<Parameters<typeof waitForDecisions>[0]>,
  ) => ({
    input,
    id: "a",
    signal: new AbortController().signal,
    store,
    now: Date.now,
    options: { timeoutSec: null, fallback: "deny" as const, pollMs: 20 },
    ...extra,
  });

  it("applies a stored decision, journals who decided, removes the file; a restored wait does not journal it twice", async () => {
    await writeStateFile("a", [CALL]);
    const store = storeOf("a");
    await decideApproval(stateDir, "a", { decision: "deny", reason: "not now", by: BY });
    const needed: boolean[] = [];
    const events = {
      approvalNeeded: (_p: unknown, _t: number, again: boolean) => needed.push(again),
    };
    const out = await waitForDecisions(base(store, { events }));
    expect(out.decisions).toMatchObject([
      { callId: "w1", decision: "deny", reason: "not now", via: "command", by: BY },
    ]);
    const file = decisionFileOf(stateDir, "a", input, "w1");
    await expect(fs.stat(file)).rejects.toThrow();
    const again = await waitForDecisions(base(store, { events }));
    expect(again.decisions).toEqual(out.decisions);
    const journal = await store.readJournal();
    expect(journal.filter((e) => e.type === "approval")).toMatchObject([
      { callId: "w1", rule: "write(**)", decision: "deny", by: BY, via: "command" },
    ]);
    expect(journal.filter((e) => e.type === "approval-needed")).toHaveLength(1);
    expect(needed).toEqual([false, true]);
  });

  it("--ask-timeout: the fallback decides, journaled as a timeout", async () => {
    const store = storeOf("a");
    let clock = Date.parse(CALL.since);
    const out = await waitForDecisions(
      base(store, {
        now: () => {
          clock += 1_000;
          return clock;
        },
        options: { timeoutSec: 5, fallback: "allow", pollMs: 1 },
      }),
    );
    expect(out.decisions).toMatchObject([
      { callId: "w1", decision: "approve", via: "timeout", by: null },
    ]);
    expect((await store.readJournal()).find((e) => e.type === "approval")).toMatchObject({
      via: "timeout",
      decision: "approve",
    });
  });

  it("the terminal prompt and the decision files race: the first answer wins, the other is cancelled", async () => {
    await writeStateFile("a", [CALL]);
    const store = storeOf("a");
    // The prompt waits until it is cancelled; the command's decision arrives meanwhile.
    let promptSignal: AbortSignal | undefined;
    const ask = (_q: string, signal?: AbortSignal) =>
      new Promise<boolean>((resolve) => {
        promptSignal = signal;
        signal?.addEventListener("abort", () => resolve(false));
      });
    const waiting = waitForDecisions(base(store, { options: { ...base(store, {}).options, ask } }));
    await decideApproval(stateDir, "a", { decision: "approve", by: BY });
    const out = await waiting;
    expect(out.decisions).toMatchObject([{ decision: "approve", via: "command" }]);
    expect(promptSignal?.aborted, "the question was cancelled").toBe(true);

    // A prompt answered first decides; the journal says it was the terminal.
    const second = storeOf("b");
    const yes = async () => true;
    const out2 = await waitForDecisions(
      base(second, { id: "b", options: { ...base(second, {}).options, ask: yes } }),
    );
    expect(out2.decisions).toMatchObject([
      { decision: "approve", via: "terminal", by: { pid: process.pid } },
    ]);
  });
});

describe("approval-needed notification", () => {
  it("carries the pending calls and the exact approve command", () => {
    const sent: NotifyEvent[] = [];
    const events = notifyingEvents({ emit: (e) => sent.push(e) }, () => Date.parse(CALL.since));
    notifyApprovalNeeded(events, [CALL], 3, false, { id: "a", goal: "Write out.md" });
    // A restored wait for calls already announced does not notify again.
    notifyApprovalNeeded(events, [CALL], 3, true, { id: "a", goal: "Write out.md" });
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      event: "approval-needed",
      heartbeatId: "a",
      goal: "Write out.md",
      tick: 2,
      status: "executing",
      approveCommand: "ravenclaws approve a",
      pending: [{ callId: "w1", tool: "write_file", arguments: CALL.arguments, rule: "write(**)" }],
    });
    expect(sent[0]?.text).toContain("ravenclaws approve a");
  });
});

describe("the toolbox with approvals", () => {
  it("screens a call an ask rule matches, runs it once approved, and refuses it with the reason once denied", async () => {
    const workdir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-ask-")));
    try {
      const box = createToolbox(
        { workdir, stateDir: path.join(workdir, ".ravenclaws") },
        { policy: { ask: ["write(**)"] } },
      );
      const write = (id: string, file: string) => ({
        id,
        name: "write_file",
        arguments: JSON.stringify({ path: file, content: "hi" }),
      });
      expect(await box.screen(write("a", "a.md"))).toEqual({
        rule: "write(**)",
        what: "write a.md",
      });
      expect(await box.screen({ id: "r", name: "read_file", arguments: '{"path":"a.md"}' })).toBe(
        null,
      );
      const approved = await box.call(write("a", "a.md"), undefined, {
        decision: "approve",
        reason: null,
        by: "ops, pid 1",
      });
      expect(approved.status).toBe("ok");
      expect(await fs.readFile(path.join(workdir, "a.md"), "utf8")).toBe("hi");
      const denied = await box.call(write("b", "b.md"), undefined, {
        decision: "deny",
        reason: "not now",
        by: "ops, pid 1",
      });
      expect(denied.status).toBe("refused");
      expect(denied.content).toContain("Refused by the operator (ops, pid 1)");
      expect(denied.content).toContain("Reason: not now.");
      await expect(fs.stat(path.join(workdir, "b.md"))).rejects.toThrow();
    } finally {
      await fs.rm(workdir, { recursive: true, force: true });
    }
  });
});
