/**
 * The statechart the dashboard draws, derived from the machine definitions
 * of `GET /api/machine` (never a hand-written copy): states, the invoked
 * statecharts nested inside the state that invokes them (the tool loop in
 * `executing`), the transitions between them, a layered layout (dagre), and
 * which states a state path lights up. No DOM.
 */
import dagre from "@dagrejs/dagre";
import type { MachineDefinitionJson, MachineResponse } from "../serve/api.types.js";

/** A state in the drawing. */
export interface ChartNode {
  /** The state node's id, `heartbeat.sleeping`, `toolLoop.calling`. */
  id: string;
  label: string;
  /** Id of the enclosing drawn state (a compound state, or the state invoking this node's machine); null at the top. */
  parent: string | null;
  /** `atomic`, `final`, or `cluster` (has states drawn inside). */
  kind: "atomic" | "final" | "cluster";
  /** Whether it is the initial state of its parent (or machine). */
  initial: boolean;
}

/** Transitions from one drawn state to another, merged. */
export interface ChartEdge {
  source: string;
  target: string;
  /** Short event names, e.g. `done`, `error`, `wake`. */
  label: string;
  /** Every transition, `event [guard]`, one per line (the tooltip). */
  detail: string;
}

/** The drawable graph. */
export interface ChartGraph {
  nodes: ChartNode[];
  edges: ChartEdge[];
  /** Transitions declared on a machine's root (they apply in every state), `event → target`. */
  global: string[];
}

type Transition = { target?: string[] | null; guard?: unknown; eventType?: string };

/** The readable name of an event type: `done`, `error`, `wake`, `always`. */
export function shortEvent(eventType: string): string {
  if (eventType === "") return "always";
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) return actor[1] as string;
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return `after ${after[1]}`;
  const dot = eventType.lastIndexOf(".");
  return dot >= 0 ? eventType.slice(dot + 1) : eventType;
}

/** The full readable name: `assess done`, `heartbeat.wake`. */
function longEvent(eventType: string): string {
  if (eventType === "") return "always";
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) return `${actor[2]} ${actor[1]}`;
  return eventType;
}

function guardText(guard: unknown): string | null {
  if (guard === null || guard === undefined) return null;
  if (typeof guard === "string") return guard;
  if (typeof guard === "object" && typeof (guard as { type?: unknown }).type === "string") {
    return (guard as { type: string }).type;
  }
  return "guard";
}

function transitionsOf(node: MachineDefinitionJson): Transition[] {
  const out: Transition[] = [];
  for (const [eventType, list] of Object.entries(node.on ?? {})) {
    for (const t of list ?? []) out.push({ ...t, eventType });
  }
  const always = (node as { always?: unknown }).always;
  if (Array.isArray(always)) {
    for (const t of always as Transition[]) out.push({ ...t, eventType: "" });
  }
  return out;
}

const stripHash = (target: string) => (target.startsWith("#") ? target.slice(1) : target);

/**
 * The graph of the root machine with every invoked statechart nested in the
 * state that invokes it. Transitions without a target (internal) are left
 * out; ones declared on a machine's root are listed in `global`.
 */
export function chartGraph(response: MachineResponse): ChartGraph {
  const nodes: ChartNode[] = [];
  const edges = new Map<
    string,
    { source: string; target: string; labels: string[]; detail: string[] }
  >();
  const global: string[] = [];
  const placed = new Set<string>();

  const addMachine = (machineId: string, parent: string | null) => {
    const machine = response.machines[machineId];
    if (!machine || placed.has(machineId)) return;
    placed.add(machineId);
    for (const t of transitionsOf(machine)) {
      for (const target of t.target ?? []) {
        global.push(`${longEvent(t.eventType ?? "")} → ${stripHash(target).split(".").at(-1)}`);
      }
    }
    visit(machine, parent);
  };

  const visit = (node: MachineDefinitionJson, parent: string | null) => {
    const initialTarget = node.initial?.target?.[0];
    const initial = initialTarget ? stripHash(initialTarget) : null;
    for (const child of Object.values(node.states ?? {})) {
      const invoked = response.invokes?.[child.id];
      const hasChildren = Object.keys(child.states ?? {}).length > 0;
      nodes.push({
        id: child.id,
        label: child.key,
        parent,
        kind: hasChildren || invoked ? "cluster" : child.type === "final" ? "final" : "atomic",
        initial: child.id === initial,
      });
      for (const t of transitionsOf(child)) {
        const text = `${longEvent(t.eventType ?? "")}${guardText(t.guard) ? ` [${guardText(t.guard)}]` : ""}`;
        for (const rawTarget of t.target ?? []) {
          const target = stripHash(rawTarget);
          const key = `${child.id}\u0000${target}`;
          const edge = edges.get(key) ?? { source: child.id, target, labels: [], detail: [] };
          const short = shortEvent(t.eventType ?? "");
          if (!edge.labels.includes(short)) edge.labels.push(short);
          edge.detail.push(text);
          edges.set(key, edge);
        }
      }
      if (hasChildren) visit(child, child.id);
      if (invoked) addMachine(invoked, child.id);
    }
  };

  addMachine(response.root, null);
  const known = new Set(nodes.map((n) => n.id));
  return {
    nodes,
    edges: [...edges.values()]
      .filter((e) => known.has(e.source) && known.has(e.target))
      .map((e) => ({
        source: e.source,
        target: e.target,
        label: e.labels.join(", "),
        detail: e.detail.join("\n"),
      })),
    global,
  };
}

/** Parses a state as the API gives it: a dotted path (`executing.calling`) or XState's state value as JSON text. */
export function statePath(state: string): string[] {
  const text = state.trim();
  if (text === "") return [];
  if (text.startsWith("{") || text.startsWith('"')) {
    try {
      let value: unknown = JSON.parse(text);
      const out: string[] = [];
      while (value && typeof value === "object") {
        const [key, inner] = Object.entries(value as Record<string, unknown>)[0] ?? [];
        if (key === undefined) break;
        out.push(key);
        value = inner;
      }
      if (typeof value === "string") out.push(value);
      return out;
    } catch {
      return [text];
    }
  }
  return text.split(".").filter((s) => s !== "");
}

/**
 * The ids of the drawn states a state lights up, outermost first:
 * `executing.calling` → `heartbeat.executing`, `toolLoop.calling`. A segment
 * not found in a state's children continues in the statechart it invokes.
 * Unknown segments are ignored (an older server's state names).
 */
export function activeStateIds(response: MachineResponse, state: string): string[] {
  const out: string[] = [];
  let node: MachineDefinitionJson | undefined = response.machines[response.root];
  for (const segment of statePath(state)) {
    if (!node) break;
    let next: MachineDefinitionJson | undefined = node.states?.[segment];
    if (!next) {
      const invoked = response.invokes?.[node.id];
      next = invoked ? response.machines[invoked]?.states?.[segment] : undefined;
    }
    if (!next) break;
    out.push(next.id);
    node = next;
  }
  return out;
}

/** A positioned state (centre x/y, size) and routed edges, in SVG units. */
export interface ChartLayout {
  width: number;
  height: number;
  nodes: Array<ChartNode & { x: number; y: number; width: number; height: number }>;
  edges: Array<
    ChartEdge & { points: Array<{ x: number; y: number }>; labelX: number; labelY: number }
  >;
}

/** Width of a text in the chart's font, roughly (no DOM to measure). */
function textWidth(text: string, size: number): number {
  return text.length * size * 0.6;
}

/**
 * Lays the graph out top to bottom (or left to right) with dagre (clusters hold their nested
 * states). An edge into or out of a cluster is routed to its initial state
 * or from its final one, since dagre cannot attach edges to clusters.
 */
export function layoutChart(graph: ChartGraph, direction: "TB" | "LR" = "TB"): ChartLayout {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
  g.setGraph({
    rankdir: direction,
    nodesep: direction === "LR" ? 18 : 28,
    ranksep: direction === "LR" ? 56 : 42,
    edgesep: 12,
    marginx: 8,
    marginy: 8,
  });
  g.setDefaultEdgeLabel(() => ({}));
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  for (const n of graph.nodes) {
    if (n.kind === "cluster") {
      g.setNode(n.id, {
        label: n.label,
        paddingTop: 26,
        paddingLeft: 10,
        paddingRight: 10,
        paddingBottom: 10,
      });
    } else {
      g.setNode(n.id, {
        label: n.label,
        width: Math.max(72, textWidth(n.label, 13) + 24),
        height: 32,
      });
    }
  }
  for (const n of graph.nodes) if (n.parent) g.setParent(n.id, n.parent);

  const childrenOf = (id: string) => graph.nodes.filter((n) => n.parent === id);
  const entryOf = (id: string): string => {
    const node = byId.get(id);
    if (node?.kind !== "cluster") return id;
    const kids = childrenOf(id);
    const first = kids.find((k) => k.initial) ?? kids[0];
    return first ? entryOf(first.id) : id;
  };
  const exitOf = (id: string): string => {
    const node = byId.get(id);
    if (node?.kind !== "cluster") return id;
    const kids = childrenOf(id);
    const last = kids.find((k) => k.kind === "final") ?? kids.at(-1);
    return last ? exitOf(last.id) : id;
  };

  graph.edges.forEach((e, i) => {
    const source = exitOf(e.source);
    const target = entryOf(e.target);
    if (source === target && byId.get(e.source)?.kind === "cluster") return;
    g.setEdge(
      source,
      target,
      {
        width: textWidth(e.label, 11) + 6,
        height: 14,
        labelpos: "c",
        minlen: 1,
      },
      `e${i}`,
    );
  });
  dagre.layout(g);

  const nodes = graph.nodes.map((n) => {
    const p = g.node(n.id) as { x: number; y: number; width: number; height: number };
    return { ...n, x: p.x, y: p.y, width: p.width, height: p.height };
  });
  const edges: ChartLayout["edges"] = [];
  graph.edges.forEach((e, i) => {
    const source = exitOf(e.source);
    const target = entryOf(e.target);
    const laid = g.edge({ v: source, w: target, name: `e${i}` }) as
      | { points: Array<{ x: number; y: number }>; x?: number; y?: number }
      | undefined;
    if (!laid) return;
    const mid = laid.points[Math.floor(laid.points.length / 2)] ?? { x: 0, y: 0 };
    edges.push({ ...e, points: laid.points, labelX: laid.x ?? mid.x, labelY: laid.y ?? mid.y });
  });
  const size = g.graph() as { width?: number; height?: number };
  return { width: size.width ?? 0, height: size.height ?? 0, nodes, edges };
}
