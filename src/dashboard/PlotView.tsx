/** A small uPlot chart of per-tick values (bars) and a running total (line, right axis). */
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export interface PlotProps {
  title: string;
  ticks: number[];
  perTick: Array<number | null>;
  total: Array<number | null>;
  format: (value: number) => string;
}

/** Bars per tick and the running total as a line, sized to its container. */
export function Plot({ title, ticks, perTick, total, format }: PlotProps) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const styles = getComputedStyle(document.documentElement);
    const color = (name: string, fallback: string) =>
      styles.getPropertyValue(name).trim() || fallback;
    const bar = color("--plot-bar", "#7aa2f7");
    const line = color("--plot-line", "#e0af68");
    const axis = {
      stroke: color("--muted", "#666"),
      grid: { stroke: color("--grid", "#eee"), width: 1 },
      ticks: { show: false },
    };
    const width = () => Math.max(240, el.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: 180,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: false },
          y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
          total: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
        },
        axes: [
          {
            ...axis,
            label: "tick",
            labelSize: 14,
            incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
          },
          { ...axis, size: 56, values: (_u, vals) => vals.map((v) => format(v)) },
          {
            ...axis,
            side: 1,
            scale: "total",
            size: 60,
            grid: { show: false },
            values: (_u, vals) => vals.map((v) => format(v)),
          },
        ],
        series: [
          { label: "tick" },
          {
            label: "per tick",
            fill: bar,
            stroke: bar,
            paths: uPlot.paths.bars?.({ size: [0.6, 40] }),
            points: { show: false },
            value: (_u, v) => (v === null ? "–" : format(v)),
          },
          {
            label: "total",
            scale: "total",
            stroke: line,
            width: 2,
            points: { show: ticks.length < 40, size: 5, fill: line },
            value: (_u, v) => (v === null ? "–" : format(v)),
          },
        ],
      },
      [ticks, perTick, total] as uPlot.AlignedData,
      el,
    );
    const observer = new ResizeObserver(() => plot.setSize({ width: width(), height: 180 }));
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [ticks, perTick, total, format]);
  return (
    <section class="plot" aria-label={title}>
      <h3>
        {title} <span class="legend">▮ per tick · ━ total (right axis)</span>
      </h3>
      <div ref={box} class="plot-box" />
    </section>
  );
}
