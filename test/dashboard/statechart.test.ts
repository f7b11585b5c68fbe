/**
 * The dashboard's statechart: drawn from the real machine definitions (as
 * `GET /api/machine` serves them), the tool loop nested in `executing`, and
 * the states a state path lights up.
 */
import { describe, expect, it } from "vitest";
import {
  activeStateIds,
  chartGraph,
  layoutChart,
  shortEvent,
  statePath,
} from "../../src/dashboard/statechart.js";
import { heartbeatMachine } from "../../src/machines/heartbeat.machine.js";
import type { MachineResponse } from "../../src/serve/api.types.js";
import { machineDefinitions } from "../../src/services/diagram.js";

const definitions = machineDefinitions(heartbeatMachine) as unknown as MachineResponse;
const graph = chartGraph(definitions);

describe("chartGraph", () => {
  it("draws every heartbeat state, with the tool loop's states inside executing", () => {
    const top = graph.nodes.filter((n) => n.parent === null).map((n) => n.label);
    const heartbeat = definitions.machines.heartbeat as { states: Record<string, unknown> };
    expect(top).toEqual(Object.keys(heartbeat.states));
    expect(top).toEqual(
      expect.arrayContaining([
        "idle",
        "assessing",
        "planning",
        "executing",
        "sleeping",
        "completed",
      ]),
    );
    const executing = graph.nodes.find((n) => n.id === "heartbeat.executing");
    expect(executing?.kind).toBe("cluster");
    const inner = graph.nodes.filter((n) => n.parent === "heartbeat.executing");
    expect(inner.map((n) => n.id)).toEqual(
      expect.arrayContaining([
        "toolLoop.checking",
        "toolLoop.calling",
        "toolLoop.acting",
        "toolLoop.done",
      ]),
    );
    expect(inner.find((n) => n.initial)?.id).toBe("toolLoop.checking");
    expect(graph.nodes.find((n) => n.id === "heartbeat.completed")?.kind).toBe("final");
  });

  it("merges the transitions between two states and keeps each one in the detail", () => {
    const toCompleted = graph.edges.find(
      (e) => e.source === "heartbeat.persisting" && e.target === "heartbeat.completed",
    );
    expect(toCompleted?.label).toBe("done");
    expect(toCompleted?.detail.split("\n")).toEqual([
      "persist done [goalMet]",
      "persist done [maxTicksDone]",
    ]);
    // The wake and the timer's end lead to the same state: one arrow, both labels.
    const wake = graph.edges.find(
      (e) => e.source === "heartbeat.sleeping" && e.detail.split("\n").includes("heartbeat.wake"),
    );
    expect(wake?.label).toBe("wake, done");
    // Eventless transitions of the tool loop are drawn too.
    expect(
      graph.edges.some((e) => e.source === "toolLoop.checking" && e.target === "toolLoop.calling"),
    ).toBe(true);
    expect(graph.global).toEqual(["heartbeat.stop → persisting"]);
  });
});

describe("activeStateIds", () => {
  it("lights the state and, inside executing, the tool loop's state", () => {
    expect(activeStateIds(definitions, "sleeping")).toEqual(["heartbeat.sleeping"]);
    expect(activeStateIds(definitions, "executing.calling")).toEqual([
      "heartbeat.executing",
      "toolLoop.calling",
    ]);
    expect(activeStateIds(definitions, '{"executing":"acting"}')).toEqual([
      "heartbeat.executing",
      "toolLoop.acting",
    ]);
    expect(activeStateIds(definitions, "executing.nowhere")).toEqual(["heartbeat.executing"]);
    expect(activeStateIds(definitions, "")).toEqual([]);
  });

  it("reads dotted paths and state values", () => {
    expect(statePath('"sleeping"')).toEqual(["sleeping"]);
    expect(statePath("a.b.c")).toEqual(["a", "b", "c"]);
    expect(shortEvent("xstate.error.actor.assess")).toBe("error");
    expect(shortEvent("heartbeat.wake")).toBe("wake");
    expect(shortEvent("")).toBe("always");
  });
});

describe("layoutChart", () => {
  it("places every state inside the drawing and the tool loop inside executing's box", () => {
    const layout = layoutChart(graph);
    expect(layout.width).toBeGreaterThan(0);
    for (const n of layout.nodes) {
      expect(n.x - n.width / 2).toBeGreaterThanOrEqual(0);
      expect(n.x + n.width / 2).toBeLessThanOrEqual(layout.width + 0.5);
      expect(n.y + n.height / 2).toBeLessThanOrEqual(layout.height + 0.5);
    }
    const box = layout.nodes.find((n) => n.id === "heartbeat.executing");
    const calling = layout.nodes.find((n) => n.id === "toolLoop.calling");
    if (!box || !calling) throw new Error("missing nodes");
    expect(Math.abs(calling.x - box.x)).toBeLessThan(box.width / 2);
    expect(Math.abs(calling.y - box.y)).toBeLessThan(box.height / 2);
    expect(layout.edges.length).toBe(graph.edges.length);
  });
});
