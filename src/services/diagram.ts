/**
 * The statechart as a picture: Mermaid `stateDiagram-v2` and the machine
 * definitions as JSON, both generated from the real machine objects (never a
 * hand-written copy), plus helpers to keep the copy embedded in the README
 * current.
 */
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from "xstate";

/** One transition of a machine, as its definition declares it. */
export interface MachineTransition {
  /** The state node that declares it. */
  source: AnyStateNode;
  /** Its event type; `""` for an eventless (`always`) transition. */
  eventType: string;
  /** Its position among the transitions of `source` for `eventType` (guards are tried in order). */
  index: number;
  transition: AnyTransitionDefinition;
  /** Stable key: `<source id> <event type> #<index>`. */
  key: string;
}

/** Every state node below the root, depth first, in definition order. */
export function stateNodesOf(machine: AnyStateMachine): AnyStateNode[] {
  const out: AnyStateNode[] = [];
  const visit = (node: AnyStateNode) => {
    for (const child of Object.values(node.states) as AnyStateNode[]) {
      out.push(child);
      visit(child);
    }
  };
  visit(machine.root);
  return out;
}

/** The key a transition is known by in {@link transitionsOf}. */
export function transitionKey(source: AnyStateNode, eventType: string, index: number): string {
  return `${source.id} ${eventType === "" ? "(always)" : eventType} #${index}`;
}

/** Every transition the machine declares, the root's included, in definition order. */
export function transitionsOf(machine: AnyStateMachine): MachineTransition[] {
  const out: MachineTransition[] = [];
  for (const source of [machine.root, ...stateNodesOf(machine)]) {
    for (const [eventType, list] of source.transitions) {
      list.forEach((transition, index) => {
        out.push({
          source,
          eventType,
          index,
          transition,
          key: transitionKey(source, eventType, index),
        });
      });
    }
    (source.always ?? []).forEach((transition, index) => {
      out.push({ source, eventType: "", index, transition, key: transitionKey(source, "", index) });
    });
  }
  return out;
}

/** The key of a transition definition as the machine holds it (e.g. from an `@xstate.microstep` inspection event). */
export function keyOfTransition(transition: AnyTransitionDefinition): string {
  const source = transition.source;
  const list =
    transition.eventType === ""
      ? (source.always ?? [])
      : (source.transitions.get(transition.eventType) ?? []);
  return transitionKey(source, transition.eventType, list.indexOf(transition));
}

/** Readable form of an event type: `assess done`, `assess error`, `after 5000ms`. */
export function eventLabel(eventType: string): string {
  if (eventType === "") return "always";
  if (eventType === "*") return "any event";
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) return `${actor[2]} ${actor[1]}`;
  const state = /^xstate\.done\.state\.(.+)$/.exec(eventType);
  if (state) return `${state[1]?.split(".").at(-1)} done`;
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return `after ${after[1]}${/^\d+$/.test(after[1] ?? "") ? "ms" : ""}`;
  return eventType;
}

/** Readable form of a guard: its name, or `not x`, `a and b`, `a or b` for the combinators. */
export function guardLabel(guard: unknown): string | null {
  if (guard === undefined || guard === null) return null;
  if (typeof guard === "string") return guard;
  if (typeof guard === "object" && typeof (guard as { type?: unknown }).type === "string") {
    return (guard as { type: string }).type;
  }
  if (typeof guard === "function") {
    const g = guard as {
      check?: { name?: string };
      guards?: unknown[];
      stateValue?: unknown;
      name?: string;
    };
    const parts = (g.guards ?? []).map((inner) => {
      const label = guardLabel(inner) ?? "guard";
      return /\s/.test(label) ? `(${label})` : label;
    });
    switch (g.check?.name) {
      case "checkNot":
        return `not ${parts[0] ?? "guard"}`;
      case "checkAnd":
        return parts.join(" and ");
      case "checkOr":
        return parts.join(" or ");
      case "checkStateIn":
        return `in ${typeof g.stateValue === "string" ? g.stateValue : JSON.stringify(g.stateValue)}`;
    }
    return g.name && g.name !== "guard" ? g.name : "guard";
  }
  return "guard";
}

/** `event [guard]`, as the diagrams and coverage reports show a transition. */
export function transitionLabel(eventType: string, guard: unknown): string {
  const g = guardLabel(guard);
  return g ? `${eventLabel(eventType)} [${g}]` : eventLabel(eventType);
}

/** Statecharts the machine invokes (such as the tool loop in `executing`), by the invoking state node. */
export function invokedMachinesOf(
  machine: AnyStateMachine,
  node: AnyStateNode,
): Array<{ id: string; machine: AnyStateMachine }> {
  const out: Array<{ id: string; machine: AnyStateMachine }> = [];
  for (const invoke of node.invoke) {
    const src: unknown = invoke.src;
    const logic =
      typeof src === "string"
        ? (machine.implementations.actors as Record<string, unknown>)[src]
        : (src as unknown);
    if (isMachine(logic)) out.push({ id: invoke.id, machine: logic });
  }
  return out;
}

function isMachine(logic: unknown): logic is AnyStateMachine {
  return (
    typeof logic === "object" &&
    logic !== null &&
    "root" in logic &&
    "getStateNodeById" in logic &&
    typeof (logic as { toJSON?: unknown }).toJSON === "function"
  );
}

/** The machine and every statechart it invokes, recursively, root first. */
export function machinesOf(machine: AnyStateMachine): AnyStateMachine[] {
  const out: AnyStateMachine[] = [];
  const visit = (m: AnyStateMachine) => {
    if (out.some((known) => known.id === m.id)) return;
    out.push(m);
    for (const node of stateNodesOf(m)) {
      for (const child of invokedMachinesOf(m, node)) visit(child.machine);
    }
  };
  visit(machine);
  return out;
}

/**
 * Mermaid `stateDiagram-v2` of the machine: every state, every transition
 * labelled `event [guard]` (transitions declared on an ancestor are drawn from
 * each state that does not handle the event itself, or only behind guards;
 * ones that do nothing are left out), and invoked statecharts drawn inside the state that invokes them.
 */
export function toMermaid(machine: AnyStateMachine): string {
  const lines = ["stateDiagram-v2"];
  const idOf = (node: AnyStateNode, prefix: string) =>
    `${prefix}${node.path.join("_")}`.replace(/[^A-Za-z0-9_]/g, "_");

  const drawMachine = (m: AnyStateMachine, prefix: string, indent: string) => {
    const root = m.root;
    const initialOf = (node: AnyStateNode) => node.initial?.target?.[0] as AnyStateNode | undefined;
    const drawNode = (parent: AnyStateNode, pad: string) => {
      const initial = initialOf(parent);
      if (initial) lines.push(`${pad}[*] --> ${idOf(initial, prefix)}`);
      for (const node of Object.values(parent.states) as AnyStateNode[]) {
        const id = idOf(node, prefix);
        if (id !== node.key) lines.push(`${pad}state "${node.key}" as ${id}`);
        const children = Object.keys(node.states).length > 0;
        const invoked = invokedMachinesOf(m, node);
        if (children || invoked.length > 0) {
          lines.push(`${pad}state ${id} {`);
          if (children) drawNode(node, `${pad}  `);
          for (const child of invoked) {
            lines.push(
              `${pad}  %% "${node.key}" invokes the ${child.machine.id} statechart as actor "${child.id}"`,
            );
            drawMachine(child.machine, `${child.machine.id}_`, `${pad}  `);
          }
          lines.push(`${pad}}`);
        }
      }
      for (const node of Object.values(parent.states) as AnyStateNode[]) {
        if (node.type === "final") {
          lines.push(`${pad}${idOf(node, prefix)} --> [*]`);
          continue;
        }
        for (const edge of edgesFrom(node)) {
          const target = edge.target ? idOf(edge.target, prefix) : idOf(node, prefix);
          lines.push(`${pad}${idOf(node, prefix)} --> ${target} : ${edge.label}`);
        }
      }
    };
    drawNode(root, indent === "" ? "  " : indent);
  };

  drawMachine(machine, "", "");
  return `${lines.join("\n")}\n`;
}

/** The transitions in effect in `node`: its own, then its ancestors' for events it does not handle. */
function edgesFrom(node: AnyStateNode): Array<{ label: string; target: AnyStateNode | null }> {
  const edges: Array<{ label: string; target: AnyStateNode | null }> = [];
  const handled = new Set<string>();
  for (let n: AnyStateNode | undefined = node; n; n = n.parent) {
    const own = new Set<string>();
    const all: Array<[string, AnyTransitionDefinition[]]> = [
      ...n.transitions,
      ...(n.always ? [["", n.always] as [string, AnyTransitionDefinition[]]] : []),
    ];
    for (const [eventType, list] of all) {
      if (handled.has(eventType)) continue;
      // Only a handler with an unguarded branch hides the ancestors' (when every
      // guard fails, XState looks further up).
      if (list.some((t) => !t.guard)) own.add(eventType);
      for (const t of list) {
        const targets = (t.target ?? []) as AnyStateNode[];
        if (targets.length === 0 && t.actions.length === 0) continue;
        const label = transitionLabel(eventType, t.guard);
        if (targets.length === 0) edges.push({ label, target: null });
        for (const target of targets) edges.push({ label, target });
      }
    }
    for (const e of own) handled.add(e);
  }
  return edges;
}

/** The definitions of the machine and every statechart it invokes, keyed by machine id (`machine.toJSON()`). */
export function toDefinitionJson(machine: AnyStateMachine): string {
  const out: Record<string, unknown> = {};
  for (const m of machinesOf(machine)) out[m.id] = m.toJSON();
  return `${JSON.stringify(out, null, 2)}\n`;
}

/** The definitions of a machine and the statecharts it invokes, with where each is invoked (what the dashboard draws). */
export interface MachineDefinitions {
  /** Id of the top machine. */
  root: string;
  /**
   * `machine.toJSON()` of each machine, keyed by machine id, root first; a
   * state node with eventless transitions also gets `always` (which `toJSON`
   * leaves out): `[{ target, guard, eventType: "" }]`.
   */
  machines: Record<string, unknown>;
  /** Which state invokes which statechart, `{ "heartbeat.executing": "toolLoop" }` (the definitions name only the actor). */
  invokes: Record<string, string>;
}

/** The machine definitions plus their nesting, as plain JSON data (`GET /api/machine`). */
export function machineDefinitions(machine: AnyStateMachine): MachineDefinitions {
  const machines: Record<string, unknown> = {};
  const invokes: Record<string, string> = {};
  for (const m of machinesOf(machine)) {
    const json = JSON.parse(JSON.stringify(m.toJSON())) as { states?: Record<string, unknown> };
    for (const node of stateNodesOf(m)) {
      for (const child of invokedMachinesOf(m, node)) invokes[node.id] = child.machine.id;
      if (!node.always || node.always.length === 0) continue;
      let target: { states?: Record<string, unknown> } | undefined = json;
      for (const key of node.path) {
        target = target?.states?.[key] as { states?: Record<string, unknown> } | undefined;
      }
      if (!target) continue;
      (target as Record<string, unknown>).always = node.always.map((t) => ({
        target: ((t.target ?? []) as AnyStateNode[]).map((n) => `#${n.id}`),
        guard: guardLabel(t.guard),
        eventType: "",
      }));
    }
    machines[m.id] = json;
  }
  return { root: machine.id, machines, invokes };
}

/** Marks the start of the generated diagram in a Markdown file. */
export const DIAGRAM_START = "<!-- diagram:start -->";
/** Marks the end of the generated diagram in a Markdown file. */
export const DIAGRAM_END = "<!-- diagram:end -->";

/** The Markdown block that sits between the markers. */
export function diagramBlock(mermaid: string): string {
  return `\n\`\`\`mermaid\n${mermaid.endsWith("\n") ? mermaid : `${mermaid}\n`}\`\`\`\n`;
}

/** The Mermaid text embedded between the markers of a Markdown document, or null without markers. */
export function embeddedDiagram(document: string): string | null {
  const start = document.indexOf(DIAGRAM_START);
  const end = document.indexOf(DIAGRAM_END);
  if (start < 0 || end < start) return null;
  const block = document.slice(start + DIAGRAM_START.length, end);
  const match = /```mermaid\n([\s\S]*?)```/.exec(block);
  return match ? (match[1] ?? "") : null;
}

/** The document with the diagram between its markers replaced; null when the markers are missing. */
export function embedDiagram(document: string, mermaid: string): string | null {
  const start = document.indexOf(DIAGRAM_START);
  const end = document.indexOf(DIAGRAM_END);
  if (start < 0 || end < start) return null;
  return `${document.slice(0, start + DIAGRAM_START.length)}${diagramBlock(mermaid)}${document.slice(end)}`;
}
