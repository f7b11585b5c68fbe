/** The statechart as SVG, laid out once per definition, with the active states lit. */
import { useMemo } from "preact/hooks";
import type { MachineResponse } from "../serve/api.types.js";
import { activeStateIds, chartGraph, layoutChart } from "./statechart.js";

/** Draws the machine; `state` (dotted path) lights up its states. */
export function Statechart({ machine, state }: { machine: MachineResponse; state: string }) {
  const layout = useMemo(() => {
    const graph = chartGraph(machine);
    return { graph, layout: layoutChart(graph, "TB") };
  }, [machine]);
  const active = new Set(activeStateIds(machine, state));
  const { width, height, nodes, edges } = layout.layout;
  const clusters = nodes.filter((n) => n.kind === "cluster");
  const states = nodes.filter((n) => n.kind !== "cluster");
  const path = (points: Array<{ x: number; y: number }>) =>
    points.map((p, i) => `${i === 0 ? "M" : "L"}${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(" ");
  return (
    <figure class="chart">
      <svg
        viewBox={`0 0 ${Math.ceil(width)} ${Math.ceil(height)}`}
        width={Math.ceil(width)}
        height={Math.ceil(height)}
        role="img"
        aria-label={`Statechart, active: ${state || "unknown"}`}
        data-active={[...active].join(" ")}
      >
        <defs>
          <marker
            id="arrow"
            viewBox="0 0 10 10"
            refX="9"
            refY="5"
            markerWidth="7"
            markerHeight="7"
            orient="auto-start-reverse"
          >
            <path d="M0 0 L10 5 L0 10 z" class="arrowhead" />
          </marker>
        </defs>
        {clusters.map((n) => (
          <g key={n.id} class={`cluster${active.has(n.id) ? " active" : ""}`} data-state={n.id}>
            <rect
              x={n.x - n.width / 2}
              y={n.y - n.height / 2}
              width={n.width}
              height={n.height}
              rx="10"
            />
            <text x={n.x - n.width / 2 + 10} y={n.y - n.height / 2 + 17} class="cluster-label">
              {n.label}
            </text>
          </g>
        ))}
        {edges.map((e) => (
          <g key={`${e.source}>${e.target}`} class="edge">
            <title>{e.detail}</title>
            <path d={path(e.points)} marker-end="url(#arrow)" />
            <text x={e.labelX} y={e.labelY + 4} class="edge-label">
              {e.label}
            </text>
          </g>
        ))}
        {states.map((n) => (
          <g
            key={n.id}
            class={`state ${n.kind}${active.has(n.id) ? " active" : ""}`}
            data-state={n.id}
          >
            <rect
              x={n.x - n.width / 2}
              y={n.y - n.height / 2}
              width={n.width}
              height={n.height}
              rx={n.kind === "final" ? 16 : 7}
            />
            <text x={n.x} y={n.y + 4.5}>
              {n.label}
            </text>
          </g>
        ))}
      </svg>
      {layout.graph.global.length > 0 && (
        <figcaption>
          In every state: {layout.graph.global.join("; ")}. Hover an arrow for its guards.
        </figcaption>
      )}
    </figure>
  );
}
