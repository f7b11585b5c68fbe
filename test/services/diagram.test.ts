/**
 * The diagram generator: Mermaid and JSON from the real machines, labels of
 * events and guards, and the README embedding helpers.
 */
import { describe, expect, it } from "vitest";
import { and, not, or, setup, stateIn } from "xstate";
import { heartbeatMachine } from "../../src/machines/heartbeat.machine.js";
import { HEARTBEAT_STATES } from "../../src/machines/shared.js";
import { toolLoopMachine } from "../../src/machines/toolLoop.machine.js";
import {
  DIAGRAM_END,
  DIAGRAM_START,
  embedDiagram,
  embeddedDiagram,
  eventLabel,
  guardLabel,
  machineDefinitions,
  machinesOf,
  stateNodesOf,
  toDefinitionJson,
  toMermaid,
  transitionLabel,
  transitionsOf,
} from "../../src/services/diagram.js";

const mermaid = toMermaid(heartbeatMachine);
const lines = mermaid.split("\n").map((l) => l.trim());

/** The lines inside `state <id> { … }`. */
function blockOf(id: string): string[] {
  const all = mermaid.split("\n");
  const start = all.findIndex((l) => l.trim() === `state ${id} {`);
  if (start < 0) return [];
  const indent = all[start]?.indexOf("state") ?? 0;
  const end = all.findIndex((l, i) => i > start && l === `${" ".repeat(indent)}}`);
  return all.slice(start + 1, end).map((l) => l.trim());
}

describe("toMermaid (heartbeat)", () => {
  it("is a stateDiagram-v2 with all nine states, the initial state and the final states", () => {
    expect(lines[0]).toBe("stateDiagram-v2");
    for (const state of HEARTBEAT_STATES) {
      expect(lines.some((l) => l.startsWith(`${state} -->`) || l.endsWith(`--> ${state}`))).toBe(
        true,
      );
    }
    expect(lines).toContain("[*] --> idle");
    for (const final of ["completed", "failed", "shutdown"])
      expect(lines).toContain(`${final} --> [*]`);
  });

  it("labels transitions with readable events and their guards", () => {
    expect(lines).toContain("assessing --> persisting : assess done [goalComplete]");
    expect(lines).toContain("assessing --> persisting : assess error");
    expect(lines).toContain("idle --> persisting : heartbeat.start");
    expect(lines).toContain("persisting --> observing : persist done [tickDue]");
    expect(lines).toContain("observing --> persisting : observe done [unchangedSinceIdle]");
    expect(lines).toContain("sleeping --> persisting : sleepUntil done [outsideActiveHours]");
    expect(lines).toContain("persisting --> completed : persist done [goalMet]");
    expect(lines).toContain("sleeping --> observing : heartbeat.wake");
    expect(mermaid).not.toContain("xstate.done.actor");
  });

  it("draws every transition of the definition that does something, from its state", () => {
    const drawn = new Set(lines);
    for (const t of transitionsOf(heartbeatMachine)) {
      const targets = t.transition.target ?? [];
      if (targets.length === 0 && t.transition.actions.length === 0) continue;
      const label = transitionLabel(t.eventType, t.transition.guard);
      // A transition of the root applies in every non-final state that does not handle the event.
      const sources =
        t.source === heartbeatMachine.root
          ? stateNodesOf(heartbeatMachine).filter(
              (n) => n.type !== "final" && !n.transitions.has(t.eventType),
            )
          : [t.source];
      expect(sources.length).toBeGreaterThan(0);
      for (const source of sources) {
        for (const target of targets.length ? targets : [source]) {
          expect(drawn, `${source.key} --> ${target.key} : ${label}`).toContain(
            `${source.key} --> ${target.key} : ${label}`,
          );
        }
      }
    }
  });

  it("draws heartbeat.stop from every non-final state, and in persisting only its guarded branch", () => {
    for (const state of ["idle", "assessing", "planning", "executing", "sleeping"]) {
      expect(lines).toContain(`${state} --> persisting : heartbeat.stop`);
    }
    expect(lines).toContain("persisting --> persisting : heartbeat.stop [sleepScheduled]");
    // A guarded handler does not hide the root's: a stop while no tool call waits is the usual one.
    expect(lines).toContain("executing --> persisting : heartbeat.stop [parked]");
    expect(lines).not.toContain("persisting --> persisting : heartbeat.stop");
  });

  it("draws the tool-loop child inside executing, with its own states and transitions", () => {
    const block = blockOf("executing");
    expect(block.length).toBeGreaterThan(0);
    const loopStates = stateNodesOf(toolLoopMachine).map((n) => n.key);
    for (const key of loopStates) expect(block).toContain(`state "${key}" as toolLoop_${key}`);
    expect(block).toContain(`[*] --> toolLoop_${toolLoopMachine.root.initial?.target[0]?.key}`);
    expect(block).toContain("toolLoop_acting --> toolLoop_done : runTools error");
    expect(
      block.some((l) => /toolLoop_calling --> toolLoop_screening : callModel done \[.+\]/.test(l)),
    ).toBe(true);
    expect(
      block.some((l) =>
        /toolLoop_screening --> toolLoop_awaitingApproval : screenCalls done \[needsApproval\]/.test(
          l,
        ),
      ),
    ).toBe(true);
    expect(block).toContain("toolLoop_done --> [*]");
    // No tool-loop state leaks outside the composite.
    expect(lines.filter((l) => l.includes("toolLoop_")).length).toBe(
      block.filter((l) => l.includes("toolLoop_")).length,
    );
  });

  it("is deterministic", () => {
    expect(toMermaid(heartbeatMachine)).toBe(mermaid);
  });
});

describe("toMermaid (other shapes)", () => {
  const machine = setup({
    guards: { a: () => true, b: () => false },
    delays: { later: 10 },
  }).createMachine({
    id: "shapes",
    initial: "outer",
    states: {
      outer: {
        initial: "inner",
        states: {
          inner: { on: { next: { target: "other", guard: not("a") } } },
          other: { type: "final" },
        },
        onDone: "end",
        after: { 500: { target: "end", guard: and(["a", or(["b", not("a")])]) } },
        always: { target: "end", guard: stateIn("#shapes.outer.other") },
        on: { poke: { actions: () => {} } },
      },
      end: { type: "final" },
    },
  });
  const text = toMermaid(machine);

  it("draws nested states as composites with unique ids", () => {
    expect(text).toContain("state outer {");
    expect(text).toContain('state "inner" as outer_inner');
    expect(text).toContain("outer_inner --> outer_other : next [not a]");
    expect(text).toContain("[*] --> outer_inner");
  });

  it("labels done, delayed, eventless and combined-guard transitions, and targetless ones as self-loops", () => {
    expect(text).toContain("outer --> end : outer done");
    expect(text).toContain("outer --> end : after 500ms [a and (b or (not a))]");
    expect(text).toContain("outer --> end : always [in #shapes.outer.other]");
    expect(text).toContain("outer --> outer : poke");
  });
});

describe("labels", () => {
  it("makes event types readable", () => {
    expect(eventLabel("xstate.done.actor.assess")).toBe("assess done");
    expect(eventLabel("xstate.error.actor.persist")).toBe("persist error");
    expect(eventLabel("xstate.done.state.heartbeat.outer")).toBe("outer done");
    expect(eventLabel("xstate.after.1000.heartbeat.sleeping")).toBe("after 1000ms");
    expect(eventLabel("xstate.after.later.heartbeat.sleeping")).toBe("after later");
    expect(eventLabel("")).toBe("always");
    expect(eventLabel("*")).toBe("any event");
    expect(eventLabel("heartbeat.stop")).toBe("heartbeat.stop");
  });

  it("names guards, including combinators", () => {
    expect(guardLabel(undefined)).toBeNull();
    expect(guardLabel("x")).toBe("x");
    expect(guardLabel({ type: "goalComplete", params: () => ({}) })).toBe("goalComplete");
    expect(guardLabel(not("x"))).toBe("not x");
    expect(guardLabel(and(["x", "y"]))).toBe("x and y");
    expect(guardLabel(or(["x", not("y")]))).toBe("x or (not y)");
    expect(guardLabel(function budgetLeft() {})).toBe("budgetLeft");
    expect(guardLabel(() => true)).toBe("guard");
  });
});

describe("toDefinitionJson", () => {
  it("holds the definition of the heartbeat and of the tool loop it invokes", () => {
    const json = JSON.parse(toDefinitionJson(heartbeatMachine)) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(["heartbeat", "toolLoop"]);
    expect(json.heartbeat).toEqual(JSON.parse(JSON.stringify(heartbeatMachine.toJSON())));
    expect(json.toolLoop).toEqual(JSON.parse(JSON.stringify(toolLoopMachine.toJSON())));
    expect(machinesOf(heartbeatMachine).map((m) => m.id)).toEqual(["heartbeat", "toolLoop"]);
  });
});

describe("README embedding", () => {
  it("replaces the block between the markers and reads it back", () => {
    const doc = `# Title\n\n${DIAGRAM_START}\nstale\n${DIAGRAM_END}\n\nText.\n`;
    const updated = embedDiagram(doc, mermaid) ?? "";
    expect(embeddedDiagram(updated)).toBe(mermaid);
    expect(updated).toContain(`${DIAGRAM_START}\n\`\`\`mermaid\nstateDiagram-v2`);
    expect(updated.endsWith(`\`\`\`\n${DIAGRAM_END}\n\nText.\n`)).toBe(true);
    expect(embedDiagram(updated, mermaid)).toBe(updated);
  });

  it("returns null without markers", () => {
    expect(embedDiagram("no markers", mermaid)).toBeNull();
    expect(embeddedDiagram("no markers")).toBeNull();
    expect(embeddedDiagram(`${DIAGRAM_END} ${DIAGRAM_START}`)).toBeNull();
  });
});

describe("machineDefinitions", () => {
  it("holds every machine's definition, its eventless transitions, and says that executing invokes the tool loop", () => {
    const defs = machineDefinitions(heartbeatMachine);
    expect(defs.root).toBe("heartbeat");
    expect(Object.keys(defs.machines)).toEqual(["heartbeat", "toolLoop"]);
    expect(defs.invokes).toEqual({ "heartbeat.executing": "toolLoop" });
    const toolLoop = defs.machines.toolLoop as {
      states: Record<string, { always?: unknown; on: unknown }>;
    };
    expect(toolLoop.states.checking?.always).toEqual([
      { target: ["#toolLoop.awaitingApproval"], guard: "parkedCalls", eventType: "" },
      { target: ["#toolLoop.calling"], guard: "withinTickBudget", eventType: "" },
      { target: ["#toolLoop.done"], guard: null, eventType: "" },
    ]);
    expect(toolLoop.states.calling?.on).toEqual(
      (JSON.parse(JSON.stringify(toolLoopMachine.toJSON())) as typeof toolLoop).states.calling?.on,
    );
  });
});
