/**
 * Model-based tests of the heartbeat and tool-loop statecharts with
 * `xstate/graph` (DESIGN.md sections 1 and 7).
 *
 * The real machines run with every invoked actor stubbed through `provide()`
 * by a promise that never settles: the test settles them by sending
 * `xstate.done.actor.<id>` (with representative outputs) and
 * `xstate.error.actor.<id>`. The events tried in a state are derived from the
 * definition (every event its state nodes handle), so a transition added to a
 * machine is explored, and counted, without touching this file; an invoke
 * without representative outputs here fails loudly.
 *
 * `getShortestPaths` explores every reachable (state, context) from a few
 * start snapshots per machine. Every generated path is replayed on a real
 * actor (it must agree with the graph) and checked against the invariants; a
 * subset that covers every transition, state and ending is replayed as its
 * own test with restore equivalence at every step. Coverage of states and
 * transitions is computed from the transitions the actors actually took
 * (`@xstate.microstep` inspection events) and must be 100%.
 */
import { describe, expect, it } from "vitest";
import {
  type AnyEventObject,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type AnyStateNode,
  assign,
  createActor,
  fromPromise,
  transition,
} from "xstate";
import { getAdjacencyMap, getShortestPaths } from "xstate/graph";
import { insideActiveHours } from "../../src/machines/activeHours.js";
import { heartbeatMachine } from "../../src/machines/heartbeat.machine.js";
import type {
  AssessInput,
  AssessOutput,
  HeartbeatContext,
  HeartbeatInput,
  HeartbeatSettings,
  ObserveInput,
  ObserveOutput,
  PersistInput,
  PlanInput,
  PlanOutput,
  ResumeRecord,
  SleepInput,
  SleepOutput,
  TokenUsage,
} from "../../src/machines/heartbeat.types.js";
import { toolLoopMachine } from "../../src/machines/toolLoop.machine.js";
import type {
  AwaitApprovalInput,
  AwaitApprovalOutput,
  CallModelInput,
  CallModelOutput,
  PendingApproval,
  RunToolsInput,
  RunToolsOutput,
  ScreenCallsInput,
  ScreenCallsOutput,
  ToolLoopContext,
  ToolLoopInput,
  ToolLoopOutput,
} from "../../src/machines/toolLoop.types.js";
import { timeImplementations } from "../../src/runtime.js";
import {
  keyOfTransition,
  stateNodesOf,
  transitionLabel,
  transitionsOf,
} from "../../src/services/diagram.js";

// The heartbeat gets its time from the injected clock (the production
// `readClock` and planner with a clock stopped at T0), so generated paths and
// their replays see the same times.
const T0 = Date.parse("2030-01-01T00:00:00.000Z");

// ---------------------------------------------------------------------------
// Generic harness
// ---------------------------------------------------------------------------

/** An actor logic that never settles by itself. */
const never = <TOutput, TInput>() =>
  fromPromise<TOutput, TInput>(() => new Promise<TOutput>(() => {}));

/** A place to start exploring from: an input, optionally with a persisted snapshot to restore. */
interface Scenario {
  name: string;
  input: unknown;
  /** The persisted snapshot (JSON) to start from. */
  restore?: () => unknown;
}

type Microstep = {
  transitions: Array<{ key: string; source: AnyStateNode; targets: AnyStateNode[] }>;
  snapshot: AnyMachineSnapshot;
};

/** One step: the event sent and what the actor did with it. */
interface StepRecord {
  event: AnyEventObject | null;
  before: AnyMachineSnapshot | null;
  after: AnyMachineSnapshot;
  microsteps: Microstep[];
}

interface ModelSpec {
  name: string;
  /** The machine with every invoked actor stubbed. */
  machine: AnyStateMachine;
  /** Representative outputs by invoke id, for `xstate.done.actor.<id>`. */
  outputs: Record<string, readonly unknown[]>;
  /** Representative errors, for `xstate.error.actor.<id>`. */
  errors: readonly unknown[];
  /** Representative events, by type, for events that carry data (others are sent as `{ type }`). */
  events?: Record<string, readonly AnyEventObject[]>;
  scenarios: Scenario[];
  /** Checks one step; throws (expect) when an invariant breaks. */
  invariant: (step: StepRecord) => void;
  /** How an ending is told apart (final state plus why), so each kind gets a replayed test. */
  ending: (snapshot: AnyMachineSnapshot) => string;
  /**
   * What makes two snapshots the same state for the exploration. Default: value
   * and the whole context. Dropping context that no guard reads keeps the graph small.
   */
  stateKey?: (snapshot: AnyMachineSnapshot) => string;
  /** Fewest paths to replay as tests. */
  minPathTests: number;
}

/** A path to replay: a scenario, its events, and the state keys the graph expects after start and each event. */
interface GeneratedPath {
  scenario: Scenario;
  events: AnyEventObject[];
  expectedKeys: string[];
}

const json = (value: unknown) => JSON.stringify(value);

/** Value, status and whole context: what restore equivalence compares. */
const fullState = (snapshot: AnyMachineSnapshot) =>
  json({ value: snapshot.value, status: snapshot.status, context: snapshot.context });

const keyOf = (spec: ModelSpec, snapshot: AnyMachineSnapshot) =>
  (spec.stateKey ?? fullState)(snapshot);

/** The state nodes a snapshot is in (the root included). */
function activeNodes(machine: AnyStateMachine, snapshot: AnyMachineSnapshot): AnyStateNode[] {
  return [
    machine.root,
    ...stateNodesOf(machine).filter((node) => snapshot.matches(node.path.join(".") as never)),
  ];
}

/** Events that are not sent from outside: raised by XState itself. */
const isInternal = (type: string) =>
  type === "" || type.startsWith("xstate.after.") || type.startsWith("xstate.done.state.");

/** Every event type the machine handles from outside (`heartbeat.start`, …). */
function externalEventTypes(machine: AnyStateMachine): string[] {
  const types = new Set<string>();
  for (const t of transitionsOf(machine)) {
    if (!t.eventType.startsWith("xstate.") && t.eventType !== "") types.add(t.eventType);
  }
  return [...types];
}

/** The events to try in a snapshot, derived from the transitions of its active state nodes. */
function eventsFor(spec: ModelSpec, snapshot: AnyMachineSnapshot): AnyEventObject[] {
  if (snapshot.status !== "active") return [];
  const types = new Set<string>();
  for (const node of activeNodes(spec.machine, snapshot)) {
    for (const type of node.transitions.keys()) if (!isInternal(type)) types.add(type);
  }
  const events: AnyEventObject[] = [];
  for (const type of types) {
    const done = /^xstate\.done\.actor\.(.+)$/.exec(type);
    const error = /^xstate\.error\.actor\.(.+)$/.exec(type);
    if (done) {
      const outputs = spec.outputs[done[1] ?? ""];
      if (!outputs?.length) {
        throw new Error(
          `${spec.name}: no representative output for the invoked actor "${done[1]}": add one to the outputs in test/machines/modelBased.test.ts`,
        );
      }
      for (const output of outputs) events.push({ type, output });
    } else if (error) {
      for (const e of spec.errors) events.push({ type, error: e });
    } else {
      events.push(...(spec.events?.[type] ?? [{ type }]));
    }
  }
  return events;
}

/** Creates and starts an actor, from the scenario or from a persisted snapshot, recording its microsteps. */
function startActor(
  spec: ModelSpec,
  scenario: Scenario,
  microsteps: Microstep[] | null,
  persisted: unknown = scenario.restore?.(),
) {
  const actor = createActor(spec.machine, {
    input: scenario.input,
    ...(persisted ? { snapshot: persisted as never } : {}),
    ...(microsteps
      ? {
          inspect: (event) => {
            if (event.type !== "@xstate.microstep") return;
            microsteps.push({
              transitions: event._transitions.map((t) => ({
                key: keyOfTransition(t),
                source: t.source,
                targets: (t.target ?? []) as AnyStateNode[],
              })),
              snapshot: event.snapshot as AnyMachineSnapshot,
            });
          },
        }
      : {}),
  });
  actor.start();
  return actor;
}

const snapshotOf = (actor: { getSnapshot(): unknown }) => actor.getSnapshot() as AnyMachineSnapshot;

/** Events that a state does not handle change nothing. */
function checkIgnoredEvents(spec: ModelSpec, snapshot: AnyMachineSnapshot) {
  if (snapshot.status !== "active") return;
  const handled = new Set(
    activeNodes(spec.machine, snapshot).flatMap((n) => [...n.transitions.keys()]),
  );
  for (const type of externalEventTypes(spec.machine)) {
    if (handled.has(type)) continue;
    const [next] = transition(spec.machine, snapshot as never, { type } as never);
    expect(
      fullState(next as AnyMachineSnapshot),
      `${type} is ignored in ${json(snapshot.value)}`,
    ).toBe(fullState(snapshot));
  }
}

/** What one checked edge (or scenario start) covers. */
interface Coverage {
  transitions: Set<string>;
  states: Set<string>;
  ending: string | null;
}

function coverageOf(spec: ModelSpec, steps: StepRecord[]): Coverage {
  const transitions = new Set<string>();
  const states = new Set<string>();
  const visit = (snapshot: AnyMachineSnapshot) => {
    for (const node of activeNodes(spec.machine, snapshot)) {
      if (node !== spec.machine.root) states.add(node.id);
    }
  };
  for (const step of steps) {
    visit(step.after);
    for (const micro of step.microsteps) {
      visit(micro.snapshot);
      for (const t of micro.transitions) transitions.add(t.key);
    }
  }
  const last = steps.at(-1)?.after;
  return {
    transitions,
    states,
    ending: last && last.status !== "active" ? spec.ending(last) : null,
  };
}

const endOf = (spec: ModelSpec, snapshot: AnyMachineSnapshot) =>
  snapshot.status === "active" ? json(snapshot.value) : spec.ending(snapshot);

/** A path test candidate: a path and what its last step covers. */
interface Candidate {
  path: GeneratedPath;
  covers: Coverage;
  /** Where the path ends: the final state and why, or the state's value. */
  end: string;
}

/**
 * Explores one scenario: `getShortestPaths` for a shortest path to every
 * state, `getAdjacencyMap` for every edge. Each edge is checked on a real
 * actor restored from the JSON of its source snapshot: the restored actor
 * equals the source, takes the edge to the graph's target, and the step keeps
 * the invariants.
 */
function explore(spec: ModelSpec, scenario: Scenario, problems: string[]) {
  const note = (where: string, error: unknown) => {
    if (problems.length < 25) {
      problems.push(
        `${scenario.name}: ${where}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  };
  const startMicrosteps: Microstep[] = [];
  const start = snapshotOf(startActor(spec, scenario, startMicrosteps));
  const startStep: StepRecord = {
    event: null,
    before: null,
    after: start,
    microsteps: startMicrosteps,
  };
  try {
    spec.invariant(startStep);
  } catch (error) {
    note("start", error);
  }
  const options = {
    input: scenario.input,
    ...(scenario.restore ? { fromState: start } : {}),
    events: (snapshot: AnyMachineSnapshot) => eventsFor(spec, snapshot),
    serializeState: (snapshot: AnyMachineSnapshot) => keyOf(spec, snapshot),
    limit: 100_000,
  } as never;
  type GraphPath = {
    state: AnyMachineSnapshot;
    steps: Array<{ state: AnyMachineSnapshot; event: AnyEventObject }>;
  };
  // Each step holds an event and the snapshot it led to; the first is the start (`xstate.init`).
  const shortest = new Map<string, GraphPath>();
  for (const p of getShortestPaths(spec.machine, options) as unknown as GraphPath[]) {
    shortest.set(keyOf(spec, p.state), p);
  }
  const adjacency = getAdjacencyMap(spec.machine, options) as unknown as Record<
    string,
    {
      state: AnyMachineSnapshot;
      transitions: Record<string, { event: AnyEventObject; state: AnyMachineSnapshot }>;
    }
  >;

  const candidates: Candidate[] = [
    {
      path: { scenario, events: [], expectedKeys: [keyOf(spec, start)] },
      covers: coverageOf(spec, [startStep]),
      end: endOf(spec, start),
    },
  ];
  let edges = 0;
  for (const [fromKey, { state: from, transitions }] of Object.entries(adjacency)) {
    const prefix = shortest.get(fromKey);
    if (!prefix) {
      note(`state ${fromKey}`, new Error("has no shortest path"));
      continue;
    }
    const persisted = json(spec.machine.getPersistedSnapshot(from));
    for (const { event, state: to } of Object.values(transitions)) {
      edges += 1;
      const where = `${json(from.value)} --${event.type}-->`;
      const microsteps: Microstep[] = [];
      let step: StepRecord | null = null;
      try {
        const actor = startActor(spec, scenario, microsteps, JSON.parse(persisted));
        expect(fullState(snapshotOf(actor)), "restored from JSON: the same snapshot").toBe(
          fullState(from),
        );
        microsteps.length = 0;
        actor.send(event);
        const after = snapshotOf(actor);
        actor.stop();
        expect(fullState(after), "the restored actor takes the graph's step").toBe(fullState(to));
        step = { event, before: from, after, microsteps };
        spec.invariant(step);
        checkIgnoredEvents(spec, after);
      } catch (error) {
        note(where, error);
      }
      if (!step) continue;
      candidates.push({
        path: {
          scenario,
          events: [...prefix.steps.slice(1).map((s) => s.event), event],
          expectedKeys: [...prefix.steps.map((s) => keyOf(spec, s.state)), keyOf(spec, to)],
        },
        covers: coverageOf(spec, [step]),
        end: endOf(spec, to),
      });
    }
  }
  return { candidates, states: Object.keys(adjacency).length, edges, paths: shortest.size };
}

/** Replays a path on a fresh actor: it must agree with the graph and keep the invariants at every step. */
function replay(spec: ModelSpec, path: GeneratedPath) {
  const microsteps: Microstep[] = [];
  const actor = startActor(spec, path.scenario, microsteps);
  const steps: StepRecord[] = [];
  const persisted: string[] = [];
  const record = (event: AnyEventObject | null, before: AnyMachineSnapshot | null) => {
    const after = snapshotOf(actor);
    const step: StepRecord = { event, before, after, microsteps: microsteps.splice(0) };
    expect(after.status, "no actor error").not.toBe("error");
    expect(keyOf(spec, after), `after ${steps.length} events: the state the graph expects`).toBe(
      path.expectedKeys[steps.length],
    );
    spec.invariant(step);
    checkIgnoredEvents(spec, after);
    steps.push(step);
    persisted.push(json(actor.getPersistedSnapshot()));
  };
  record(null, null);
  for (const event of path.events) {
    const before = snapshotOf(actor);
    actor.send(event);
    record(event, before);
  }
  actor.stop();
  return { steps, persisted };
}

/**
 * Restore equivalence along a path: at every step the persisted snapshot goes
 * through JSON into a new actor, which must equal the original and take the
 * same steps to the same end.
 */
function checkRestoreEquivalence(
  spec: ModelSpec,
  path: GeneratedPath,
  run: ReturnType<typeof replay>,
) {
  for (let i = 0; i < run.steps.length; i++) {
    const original = run.steps[i] as StepRecord;
    if (original.after.status !== "active") continue;
    const restored = startActor(spec, path.scenario, null, JSON.parse(run.persisted[i] as string));
    expect(fullState(snapshotOf(restored)), `restored at step ${i}`).toBe(
      fullState(original.after),
    );
    for (let j = i; j < path.events.length; j++) {
      restored.send(path.events[j] as AnyEventObject);
      expect(
        fullState(snapshotOf(restored)),
        `restored at step ${i}, after event ${j + 1} (${path.events[j]?.type})`,
      ).toBe(fullState((run.steps[j + 1] as StepRecord).after));
    }
    restored.stop();
  }
}

/** A path's name: its scenario, its events (readable; #n = the n-th representative output or error) and its end. */
function describePath(spec: ModelSpec, path: GeneratedPath, end: string): string {
  const events = path.events.map((e) => {
    const label = transitionLabel(e.type, undefined);
    const outputs = spec.outputs[e.type.replace(/^xstate\.done\.actor\./, "")] ?? [];
    const variant =
      "output" in e ? outputs.indexOf(e.output) : "error" in e ? spec.errors.indexOf(e.error) : 0;
    return variant > 0 ? `${label}#${variant + 1}` : label;
  });
  return `${path.scenario.name}: ${events.length ? events.join(" → ") : "(start)"} ⇒ ${end}`;
}

/** Picks paths, shortest first, until every transition, state and ending the edges reach is covered. */
function selectCovering(candidates: Candidate[]): Candidate[] {
  const features = (c: Candidate) => [
    ...[...c.covers.transitions].map((t) => `t:${t}`),
    ...[...c.covers.states].map((s) => `s:${s}`),
    ...(c.covers.ending ? [`e:${c.covers.ending}`] : []),
  ];
  const byLength = [...candidates].sort((a, b) => a.path.events.length - b.path.events.length);
  const needed = new Set(candidates.flatMap(features));
  const selected: Candidate[] = [];
  for (const c of byLength) {
    if (features(c).some((f) => needed.has(f))) {
      selected.push(c);
      for (const f of features(c)) needed.delete(f);
    }
  }
  return selected;
}

const percent = (n: number, of: number) =>
  `${n}/${of} (${of === 0 ? 100 : Math.floor((n / of) * 100)}%)`;

/** Explores every scenario of a machine, at collection time. */
function buildModel(spec: ModelSpec) {
  const problems: string[] = [];
  const explored = spec.scenarios.map((scenario) => explore(spec, scenario, problems));
  const candidates = explored.flatMap((e) => e.candidates);
  const selected = selectCovering(candidates);
  // The paths replayed as tests must themselves take every transition the edges take.
  const replayed = new Set<string>();
  for (const c of selected) {
    try {
      for (const t of coverageOf(spec, replay(spec, c.path).steps).transitions) replayed.add(t);
    } catch {
      // Reported by the path's own test.
    }
  }
  return {
    spec,
    problems,
    selected,
    replayed,
    states: explored.reduce((n, e) => n + e.states, 0),
    edges: explored.reduce((n, e) => n + e.edges, 0),
    paths: explored.reduce((n, e) => n + e.paths, 0),
    coveredTransitions: new Set(candidates.flatMap((c) => [...c.covers.transitions])),
    coveredStates: new Set(candidates.flatMap((c) => [...c.covers.states])),
  };
}

/** The states and transitions of the definition that no explored edge reached. */
function gapsOf(model: ReturnType<typeof buildModel>) {
  const { spec } = model;
  const allTransitions = transitionsOf(spec.machine);
  const allStates = stateNodesOf(spec.machine);
  const missingStates = allStates.filter((s) => !model.coveredStates.has(s.id)).map((s) => s.id);
  const missingTransitions = allTransitions
    .filter((t) => !model.coveredTransitions.has(t.key))
    .map((t) => {
      const targets = (t.transition.target ?? []).map((n: AnyStateNode) => n.key).join(", ");
      const from = t.source === spec.machine.root ? "(any state)" : t.source.key;
      return `${from}: ${transitionLabel(t.eventType, t.transition.guard)}${targets ? ` → ${targets}` : ""} [${t.key}]`;
    });
  return {
    missingStates,
    missingTransitions,
    stateLine: `${spec.name}: state coverage ${percent(allStates.length - missingStates.length, allStates.length)}`,
    transitionLine: `${spec.name}: transition coverage ${percent(allTransitions.length - missingTransitions.length, allTransitions.length)}`,
  };
}

/** The test suite for one machine. */
function modelBasedSuite(spec: ModelSpec) {
  const model = buildModel(spec);

  describe(`${spec.name}: model-based`, () => {
    it("explores the graph from every start snapshot", () => {
      console.log(
        `${spec.name}: ${spec.scenarios.length} start snapshots, ${model.states} states, ${model.edges} edges checked, ${model.paths} shortest paths, ${model.selected.length} paths replayed as tests`,
      );
      expect(model.edges).toBeGreaterThan(0);
      expect(model.selected.length).toBeGreaterThanOrEqual(spec.minPathTests);
    });

    it("every edge: a restored actor takes it like the graph, and the step keeps the invariants", () => {
      expect(model.problems).toEqual([]);
    });

    it("reaches every state and takes every transition (100%)", () => {
      const { missingStates, missingTransitions, stateLine, transitionLine } = gapsOf(model);
      console.log(`${stateLine}\n${transitionLine}`);
      const report = [
        stateLine,
        transitionLine,
        ...missingStates.map((s) => `  state never reached: ${s}`),
        ...missingTransitions.map((t) => `  transition never taken: ${t}`),
        "  Add a representative output or error, or a start scenario, in test/machines/modelBased.test.ts.",
      ].join("\n");
      expect(missingStates.length + missingTransitions.length, report).toBe(0);
    });

    it("the paths replayed as tests take every transition", () => {
      expect([...model.coveredTransitions].filter((t) => !model.replayed.has(t))).toEqual([]);
    });

    it.each(model.selected.map((c) => [describePath(spec, c.path, c.end), c.path] as const))(
      "path %s",
      (_name, path) => {
        const run = replay(spec, path);
        checkRestoreEquivalence(spec, path, run);
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------

const USAGE: TokenUsage = { calls: 1, promptTokens: 10, completionTokens: 5, totalTokens: 15 };
const iso = (ms: number) => new Date(ms).toISOString();

const SETTINGS: HeartbeatSettings = {
  maxTicks: 2,
  tickIntervalSec: 60,
  maxIterationsPerTick: 2,
  toolsEnabled: true,
  maxConsecutiveFailures: 2,
  maxTokens: 0,
  maxTokensPerTick: 0,
  failureBackoffSec: 0,
  cron: null,
  activeHours: null,
  timezone: null,
};

const heartbeatInput = (
  settings: Partial<HeartbeatSettings> = {},
  resume?: Partial<ResumeRecord>,
): HeartbeatInput => ({
  id: "mbt",
  goal: "Keep NOTES.md current",
  createdAt: iso(T0 - 3_600_000),
  settings: { ...SETTINGS, ...settings },
  ...(resume
    ? {
        resume: {
          tick: 0,
          progress: "resumed",
          lastAssessment: null,
          lastPlan: null,
          lastResult: null,
          completed: false,
          nextTickAt: null,
          usage: USAGE,
          consecutiveFailures: 0,
          digests: [],
          seq: 3,
          ...resume,
        },
      }
    : {}),
});

const assessed = (patch: Partial<AssessOutput["assessment"]>): AssessOutput => ({
  assessment: {
    goalComplete: false,
    actionNeeded: true,
    assessment: "Work remains.",
    progressSummary: "Some progress.",
    ...patch,
  },
  usage: USAGE,
});

const executed = (error: ToolLoopOutput["error"]): ToolLoopOutput => ({
  result: error ? "" : "Wrote NOTES.md.",
  usage: USAGE,
  callUsages: [USAGE],
  toolCalls: [],
  iterations: 1,
  error,
  stoppedBy: null,
});

const NON_FATAL = { code: "llm-server", message: "The server failed (HTTP 500).", fatal: false };
const FATAL = { code: "llm-auth", message: "The API key was refused (HTTP 401).", fatal: true };

/** Representative outputs of the heartbeat's invoked actors, by invoke id. */
const HEARTBEAT_OUTPUTS: Record<string, readonly unknown[]> = {
  observe: [
    { fingerprint: "fp-1", checklist: null } satisfies ObserveOutput,
    {
      fingerprint: "fp-1",
      checklist: {
        path: "HEARTBEAT.md",
        text: "Be brief.",
        truncated: false,
        bytes: 9,
        tasks: [{ task: "Check the plants", everySec: 3600, source: "file" }],
      },
    } satisfies ObserveOutput,
  ],
  assess: [
    assessed({ goalComplete: true, assessment: "All done." }),
    assessed({ actionNeeded: false, assessment: "Nothing to do now." }),
    assessed({}),
  ],
  plan: [{ plan: { steps: ["Update NOTES.md"] }, usage: USAGE } satisfies PlanOutput],
  execute: [executed(null), executed(FATAL)],
  persist: [undefined],
  sleepUntil: [
    { late: false, at: iso(T0) } satisfies SleepOutput,
    // Inside the "active hours" scenario's window.
    { late: false, at: iso(T0 + 9.5 * 3_600_000) } satisfies SleepOutput,
  ],
};

type HeartbeatSnapshot = Omit<AnyMachineSnapshot, "context"> & { context: HeartbeatContext };

/** A tool loop waiting for the approval of one write (what `toolLoop.parked` reports). */
const PARKED_LOOP: ToolLoopContext = {
  goal: "Keep NOTES.md current",
  tick: 1,
  progress: "",
  plan: { steps: ["Update NOTES.md"] },
  maxIterations: 2,
  tokenBudget: 0,
  attempt: iso(T0 - 60_000),
  budget: null,
  transcript: [
    {
      role: "assistant",
      content: null,
      toolCalls: [{ id: "w1", name: "write_file", arguments: '{"path":"NOTES.md"}' }],
    },
  ],
  iteration: 1,
  usage: USAGE,
  callUsages: [USAGE],
  toolCalls: [],
  pending: [
    {
      callId: "w1",
      tool: "write_file",
      arguments: '{"path":"NOTES.md"}',
      rule: "write(**)",
      what: "write NOTES.md",
      since: iso(T0 - 30_000),
    },
  ],
  approvals: [],
  result: null,
  error: null,
  stoppedBy: null,
};

/** Events the heartbeat gets from its tool loop, with their data. */
const HEARTBEAT_EVENTS: Record<string, readonly AnyEventObject[]> = {
  "toolLoop.parked": [{ type: "toolLoop.parked", loop: PARKED_LOOP }],
};

/**
 * The exploration key of a heartbeat snapshot: value and context without the
 * history kept for people and prompts (texts, digests, per-call records),
 * which no guard reads. Anything else, including fields added later, counts.
 */
function heartbeatKey(snapshot: AnyMachineSnapshot): string {
  const {
    progress: _progress,
    digests,
    lastAssessment: _lastAssessment,
    lastPlan: _lastPlan,
    lastResult: _lastResult,
    error,
    current,
    // Counts writes; no guard reads it (a deferral loop would grow it forever).
    seq: _seq,
    parked,
    ...rest
  } = (snapshot as HeartbeatSnapshot).context;
  return json({
    value: snapshot.value,
    status: snapshot.status,
    context: {
      ...rest,
      // Only whether the loop waits (and for which calls) matters to the heartbeat.
      parked: parked ? (parked.pending ?? []).map((p) => p.callId) : null,
      digests: digests.map((d) => d.tick),
      error: error && { code: error.code, fatal: error.fatal },
      current: current && {
        ...current,
        startedAt: undefined,
        // The quiet-tick guard tells a wake from the others; no guard reads the rest.
        wakeReason: current.wakeReason === "wake" ? "wake" : undefined,
        result: current.result === null ? null : "",
        modelCalls: current.modelCalls.length,
        errors: current.errors.map((e) => ({ phase: e.phase, code: e.code, fatal: e.fatal })),
      },
    },
  });
}

const FINAL = new Set(["completed", "failed", "shutdown"]);

const heartbeat = heartbeatMachine.provide({
  actors: {
    assess: never<AssessOutput, AssessInput>(),
    plan: never<PlanOutput, PlanInput>(),
    // A black box here: the tool loop has its own model below.
    execute: never<ToolLoopOutput, ToolLoopInput>() as never,
    persist: never<void, PersistInput>(),
    sleepUntil: never<SleepOutput, SleepInput>(),
    observe: never<ObserveOutput, ObserveInput>(),
  },
  actions: timeImplementations(() => T0),
});

function heartbeatInvariant(step: StepRecord) {
  const after = step.after as HeartbeatSnapshot;
  const ctx = after.context;
  // Sleeping always has its next tick in the future of the last clock reading.
  if (after.value === "sleeping") {
    expect(ctx.nextTickAt, "sleeping has a nextTickAt").not.toBeNull();
    expect(
      Date.parse(ctx.nextTickAt as string),
      "sleeping: nextTickAt is in the future",
    ).toBeGreaterThan(Date.parse(ctx.now));
  }
  // A tick starts only inside the active hours: a wake-up outside them defers
  // it (the sleep reports when it woke), and a planned tick is in the window.
  if (after.value === "observing" && step.before && step.before.value !== "observing") {
    const { activeHours, timezone } = ctx.settings;
    const output = (step.event as { output?: { at?: string } } | null)?.output;
    const at =
      step.event?.type === "xstate.done.actor.sleepUntil" ? output?.at : ctx.current?.startedAt;
    if (step.event?.type !== "heartbeat.wake") {
      expect(
        insideActiveHours(Date.parse(at as string), activeHours, timezone),
        "a tick starts inside the active hours",
      ).toBe(true);
    }
  }
  // Every way into a final state passes through persisting.
  for (const micro of step.microsteps) {
    for (const t of micro.transitions) {
      if (t.targets.some((n) => FINAL.has(n.key))) {
        expect(t.source.key, `${t.key} enters a final state from persisting`).toBe("persisting");
      }
    }
  }
  if (typeof after.value === "string" && FINAL.has(after.value) && step.before) {
    expect(step.before.value, `${after.value} is entered from persisting`).toBe("persisting");
  }
  // A parked tool loop (waiting for approval) is known only while the tick
  // executes, or kept by the stop that ended the run there (for the next run).
  if (ctx.parked) {
    const kept = ctx.outcome?.status === "shutdown" && ctx.outcome.reason === "awaiting-approval";
    expect(
      after.value === "executing" ||
        (kept && (after.value === "persisting" || after.value === "shutdown")) ||
        (after.value === "idle" && ctx.current !== null),
      `a parked loop only in executing or kept by its stop (${json(after.value)})`,
    ).toBe(true);
  }
  // A stop while the loop waits keeps the tick: not interrupted, not counted, the loop kept.
  if (after.value === "shutdown" && ctx.outcome?.reason === "awaiting-approval") {
    expect(ctx.parked, "the stopped wait keeps its loop").not.toBeNull();
    expect(ctx.current?.interrupted, "the stopped wait keeps its tick").toBe(false);
    expect(ctx.current?.number).toBe(ctx.tick + 1);
  }
  if (!step.before) return;
  const before = step.before as HeartbeatSnapshot;
  // A tick is counted once: +1 at most, only when the tick in progress concludes.
  const delta = ctx.tick - before.context.tick;
  expect(delta, "tick never decreases and grows by one at most").toBeGreaterThanOrEqual(0);
  expect(delta).toBeLessThanOrEqual(1);
  if (delta === 1) {
    expect(before.context.current?.number, "the tick counted is the one in progress").toBe(
      ctx.tick,
    );
    expect(before.context.current?.interrupted).toBe(false);
  }
  expect(ctx.usage.totalTokens, "usage never decreases").toBeGreaterThanOrEqual(
    before.context.usage.totalTokens,
  );
  expect(
    ctx.digests.filter((d) => d.tick === ctx.tick).length,
    "one digest per counted tick",
  ).toBeLessThanOrEqual(1);
}

const heartbeatScenarios: Scenario[] = [
  { name: "new", input: heartbeatInput() },
  { name: "no tools", input: heartbeatInput({ toolsEnabled: false, maxTicks: 1 }) },
  // After an idle tick, an unchanged workspace makes the next tick quiet (no model call).
  { name: "quiet ticks", input: heartbeatInput({ idleRecheckSec: 3600, toolsEnabled: false }) },
  {
    // The first tick spends the day's tokens: the heartbeat sleeps until the next day.
    name: "daily cap",
    input: heartbeatInput({ maxTokensPerDay: 1, toolsEnabled: false, timezone: "UTC" }),
  },
  {
    name: "budget",
    input: heartbeatInput({ maxTokens: 20, maxTicks: 1 }),
  },
  {
    name: "resumed asleep",
    input: heartbeatInput({ maxTicks: 2 }, { tick: 1, nextTickAt: iso(T0 + 30_000) }),
  },
  { name: "resumed at max ticks", input: heartbeatInput({ maxTicks: 1 }, { tick: 1 }) },
  {
    // Stopped while a write awaited approval: the next run waits for it again.
    name: "resumed awaiting approval",
    input: heartbeatInput(
      {},
      {
        tick: 0,
        current: {
          number: 1,
          startedAt: PARKED_LOOP.attempt,
          wakeReason: "start",
          assessment: assessed({}).assessment,
          plan: PARKED_LOOP.plan,
          result: null,
          errors: [],
          usage: USAGE,
          modelCalls: [],
          toolCalls: [],
          interrupted: false,
        },
        parked: PARKED_LOOP,
      },
    ),
  },
  {
    // T0 is midnight UTC: outside the window, which opens at 09:00.
    name: "active hours",
    input: heartbeatInput({ maxTicks: 1, activeHours: "09:00-10:00", timezone: "UTC" }),
  },
];

const heartbeatSpec: ModelSpec = {
  name: "heartbeat",
  machine: heartbeat,
  outputs: HEARTBEAT_OUTPUTS,
  errors: [NON_FATAL, FATAL],
  events: HEARTBEAT_EVENTS,
  scenarios: heartbeatScenarios,
  invariant: heartbeatInvariant,
  ending: (snapshot) => {
    const ctx = (snapshot as HeartbeatSnapshot).context;
    return `${json(snapshot.value)} ${ctx.outcome?.reason ?? ""}`;
  },
  stateKey: (snapshot) => heartbeatKey(snapshot),
  minPathTests: 10,
};

/**
 * A heartbeat restored while asleep with a lower `--max-ticks` than it has
 * done (the runtime patches the settings of a restored snapshot): waking it
 * ends the run.
 */
function loweredMaxTicks(): Scenario {
  const scenario = heartbeatScenarios[0] as Scenario;
  const [toSleep] = getShortestPaths(heartbeat, {
    input: scenario.input,
    events: (snapshot: AnyMachineSnapshot) => eventsFor(heartbeatSpec, snapshot),
    serializeState: (snapshot: AnyMachineSnapshot) => heartbeatKey(snapshot),
    toState: (snapshot: AnyMachineSnapshot) => snapshot.value === "sleeping",
  } as never) as unknown as Array<{ steps: Array<{ event: AnyEventObject }> }>;
  if (!toSleep) throw new Error("heartbeat: no path reaches sleeping");
  const actor = startActor(heartbeatSpec, scenario, null);
  for (const step of toSleep.steps.slice(1)) actor.send(step.event);
  const snapshot = JSON.parse(json(actor.getPersistedSnapshot())) as {
    value: unknown;
    context: HeartbeatContext;
  };
  actor.stop();
  expect(snapshot.value).toBe("sleeping");
  snapshot.context.settings = { ...snapshot.context.settings, maxTicks: snapshot.context.tick };
  const text = json(snapshot);
  return {
    name: "restored asleep, max ticks lowered",
    input: scenario.input,
    restore: () => JSON.parse(text),
  };
}
heartbeatScenarios.push(loweredMaxTicks());

modelBasedSuite(heartbeatSpec);

// ---------------------------------------------------------------------------
// Tool loop
// ---------------------------------------------------------------------------

const READ_CALL = { id: "call_1", name: "read_file", arguments: '{"path":"NOTES.md"}' };
const PENDING_READ: PendingApproval = {
  callId: READ_CALL.id,
  tool: READ_CALL.name,
  arguments: READ_CALL.arguments,
  rule: "read(NOTES.md)",
  what: "read NOTES.md",
  since: iso(T0),
};

/** Representative outputs of the tool loop's invoked actors, by invoke id. */
const TOOL_LOOP_OUTPUTS: Record<string, readonly unknown[]> = {
  callModel: [
    { content: "NOTES.md is current.", toolCalls: [], usage: USAGE } satisfies CallModelOutput,
    { content: null, toolCalls: [READ_CALL], usage: USAGE } satisfies CallModelOutput,
  ],
  runTools: [
    {
      results: [
        {
          callId: READ_CALL.id,
          name: READ_CALL.name,
          arguments: READ_CALL.arguments,
          status: "ok",
          content: "# Notes",
        },
      ],
      replies: { [READ_CALL.id]: '<data origin="tool:read_file">\n# Notes\n</data>' },
    } satisfies RunToolsOutput,
  ],
  screenCalls: [
    { pending: [] } satisfies ScreenCallsOutput,
    { pending: [PENDING_READ] } satisfies ScreenCallsOutput,
  ],
  awaitApproval: [
    {
      decisions: [
        {
          callId: READ_CALL.id,
          decision: "approve",
          reason: null,
          via: "command",
          by: { user: "ops", pid: 4242 },
          at: iso(T0 + 60_000),
        },
      ],
    } satisfies AwaitApprovalOutput,
    {
      decisions: [
        {
          callId: READ_CALL.id,
          decision: "deny",
          reason: null,
          via: "timeout",
          by: null,
          at: iso(T0 + 600_000),
        },
      ],
    } satisfies AwaitApprovalOutput,
  ],
};

const toolLoop = toolLoopMachine.provide({
  actors: {
    callModel: never<CallModelOutput, CallModelInput>(),
    runTools: never<RunToolsOutput, RunToolsInput>(),
    screenCalls: never<ScreenCallsOutput, ScreenCallsInput>(),
    awaitApproval: never<AwaitApprovalOutput, AwaitApprovalInput>(),
  },
});

const toolLoopInput = (patch: Partial<ToolLoopInput>): ToolLoopInput => ({
  goal: "Keep NOTES.md current",
  tick: 1,
  progress: "",
  plan: { steps: ["Read NOTES.md", "Update it"] },
  maxIterations: 2,
  tokenBudget: 0,
  attempt: iso(T0),
  ...patch,
});

type ToolLoopSnapshot = Omit<AnyMachineSnapshot, "context"> & { context: ToolLoopContext };

function toolLoopInvariant(step: StepRecord) {
  const ctx = (step.after as ToolLoopSnapshot).context;
  expect(ctx.iteration, "never more model calls than allowed").toBeLessThanOrEqual(
    ctx.maxIterations,
  );
  expect(ctx.callUsages.length, "each model call is counted once").toBe(ctx.iteration);
  if (ctx.tokenBudget > 0 && step.after.status === "active") {
    expect(
      ctx.usage.totalTokens,
      "within the tick's token budget while running",
    ).toBeLessThanOrEqual(ctx.tokenBudget);
  }
  const waiting = step.after.value === "awaitingApproval";
  expect(
    (ctx.pending ?? []).length > 0,
    "calls are pending exactly while the loop awaits approval",
  ).toBe(waiting);
  if (step.after.value === "acting") {
    const last = ctx.transcript.at(-1);
    const calls = last?.role === "assistant" ? last.toolCalls : [];
    for (const decision of ctx.approvals ?? []) {
      expect(
        calls.some((c) => c.id === decision.callId),
        "decisions belong to the round about to run",
      ).toBe(true);
    }
  }
  if (!step.before || !step.event) return;
  const before = (step.before as ToolLoopSnapshot).context;
  const modelAnswered = step.event.type === "xstate.done.actor.callModel";
  expect(
    ctx.iteration - before.iteration,
    `${step.event.type} counts ${modelAnswered ? "one call" : "no call"}`,
  ).toBe(modelAnswered ? 1 : 0);
  expect(ctx.toolCalls.length, "tool calls are only ever added").toBeGreaterThanOrEqual(
    before.toolCalls.length,
  );
  if (step.after.status === "done") {
    expect(step.after.output, "the loop ends with an output").toBeDefined();
  }
}

const toolLoopSpec: ModelSpec = {
  name: "toolLoop",
  machine: toolLoop,
  outputs: TOOL_LOOP_OUTPUTS,
  errors: [NON_FATAL, FATAL],
  scenarios: [
    { name: "two calls allowed", input: toolLoopInput({ maxIterations: 2 }) },
    { name: "four calls allowed", input: toolLoopInput({ maxIterations: 4 }) },
    { name: "no token budget left", input: toolLoopInput({ tokenBudget: 1 }) },
    // A loop a stop left waiting: it waits for the same calls again.
    {
      name: "restored awaiting approval",
      input: toolLoopInput({
        parked: {
          ...PARKED_LOOP,
          transcript: [{ role: "assistant", content: null, toolCalls: [READ_CALL] }],
          pending: [PENDING_READ],
        },
      }),
    },
  ],
  invariant: toolLoopInvariant,
  ending: (snapshot) => {
    const ctx = (snapshot as ToolLoopSnapshot).context;
    return `${json(snapshot.value)} ${ctx.stoppedBy ?? (ctx.error ? "error" : "answer")}`;
  },
  minPathTests: 5,
};

modelBasedSuite(toolLoopSpec);

// ---------------------------------------------------------------------------
// The harness itself: it must notice a broken machine.
// ---------------------------------------------------------------------------

describe("model-based harness", () => {
  /** A small heartbeat model: one output and one error per actor, one start. */
  const small = (machine: AnyStateMachine): ModelSpec => ({
    ...heartbeatSpec,
    name: "mutant",
    machine,
    outputs: Object.fromEntries(
      Object.entries(HEARTBEAT_OUTPUTS).map(([id, outputs]) => [id, outputs.slice(-1)]),
    ),
    errors: [NON_FATAL],
    scenarios: [{ name: "new", input: heartbeatInput() }],
  });

  it("reports a broken invariant: sleeping without a next tick", () => {
    const mutant = heartbeat.provide({ actions: { scheduleNextTick: assign({}) } as never });
    const model = buildModel(small(mutant));
    expect(model.problems.join("\n")).toContain("sleeping has a nextTickAt");
  });

  it("reports a broken invariant: a tick started outside the active hours", () => {
    const mutant = heartbeat.provide({ guards: { outsideActiveHours: () => false } as never });
    const model = buildModel({
      ...small(mutant),
      outputs: {
        ...small(mutant).outputs,
        sleepUntil: HEARTBEAT_OUTPUTS.sleepUntil?.slice(0, 1) ?? [],
      },
      scenarios: [heartbeatScenarios.find((s) => s.name === "active hours") as Scenario],
    });
    expect(model.problems.join("\n")).toContain("a tick starts inside the active hours");
  });

  it("reports a broken invariant: a tick counted twice", () => {
    const mutant = heartbeat.provide({
      actions: {
        clearCurrent: assign(({ context }) => ({ current: null, tick: context.tick + 1 })),
      } as never,
    });
    const model = buildModel(small(mutant));
    expect(model.problems.join("\n")).toContain("the tick counted is the one in progress");
  });

  it("reports a transition no path takes", () => {
    const mutant = heartbeat.provide({ guards: { goalComplete: () => false } as never });
    const gaps = gapsOf(buildModel(small(mutant)));
    expect(gaps.transitionLine).not.toContain("(100%)");
    expect(gaps.missingTransitions.join("\n")).toContain(
      "assessing: assess done [goalComplete] → persisting",
    );
  });
});
