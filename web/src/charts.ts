// Charts: uPlot for flows over time; plain canvas for the bars and the heat map (a few dozen
// rectangles each, not worth a library). Colours come from the CSS variables, so dark mode
// and light mode both read.
import uPlot from 'uplot';
import type { Heatmap, Timeline } from './api.js';

const PALETTE = ['--c1', '--c2', '--c3', '--c4', '--c5', '--c6'];

export function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** The colour of series `i`; "refused" always gets the warning colour. */
export function seriesColor(name: string, i: number): string {
  return name === 'refused' ? cssVar('--bad') : cssVar(PALETTE[i % PALETTE.length]!);
}

/** Draws (or redraws) the flows-over-time chart into `el`; returns the chart to destroy later. */
export function timelineChart(el: HTMLElement, t: Timeline, old: uPlot | null): uPlot {
  old?.destroy();
  const width = Math.max(280, el.clientWidth);
  const text = cssVar('--muted');
  const grid = cssVar('--grid');
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const data: uPlot.AlignedData = [t.times.map((x) => x / 1000), ...t.series.map((s) => s.counts)];
  return new uPlot(
    {
      width,
      height: 220,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } },
      axes: [axis, { ...axis, size: 48 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: 'time', value: (_u, v) => (v == null ? '' : new Date(v * 1000).toLocaleString()) },
        ...t.series.map((s, i) => ({
          label: s.name,
          stroke: seriesColor(s.name, i),
          fill: `${seriesColor(s.name, i)}22`,
          width: 2,
          points: { show: false },
        })),
      ],
    },
    data,
    el,
  );
}

/** Sizes `canvas` for the screen (device pixels) and returns its 2D context in CSS pixels. */
function prepare(
  canvas: HTMLCanvasElement,
  height: number,
): { ctx: CanvasRenderingContext2D; w: number; h: number } {
  const w = Math.max(200, canvas.parentElement?.clientWidth ?? 300);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, height);
  return { ctx, w, h: height };
}

/** Horizontal bars: one row per item, label left, count right. */
export function barChart(
  canvas: HTMLCanvasElement,
  items: { label: string; value: number }[],
  colorVar = '--c1',
): void {
  const row = 22;
  const { ctx, w } = prepare(canvas, Math.max(1, items.length) * row + 4);
  const font = getComputedStyle(document.body).fontFamily;
  ctx.font = `12px ${font}`;
  ctx.textBaseline = 'middle';
  const max = Math.max(1, ...items.map((i) => i.value));
  const labelW = Math.min(140, Math.max(50, ...items.map((i) => ctx.measureText(i.label).width + 10)));
  const countW = 56;
  const barW = Math.max(10, w - labelW - countW);
  items.forEach((item, i) => {
    const y = i * row + 2;
    ctx.fillStyle = cssVar('--fg');
    ctx.textAlign = 'left';
    ctx.fillText(item.label, 0, y + row / 2, labelW - 6);
    ctx.fillStyle = cssVar(colorVar);
    ctx.fillRect(labelW, y + 4, Math.max(2, (item.value / max) * barW), row - 8);
    ctx.fillStyle = cssVar('--muted');
    ctx.textAlign = 'right';
    ctx.fillText(item.value.toLocaleString(), w, y + row / 2);
  });
}

/** The port-by-time heat map: a row per port, a column per slot, darker where busier. */
export function heatmapChart(canvas: HTMLCanvasElement, m: Heatmap): (x: number, y: number) => string | null {
  const row = 18;
  const labelW = 52;
  const axisH = 18;
  const { ctx, w } = prepare(canvas, Math.max(1, m.ports.length) * row + axisH);
  const cols = Math.max(1, m.times.length);
  const cellW = (w - labelW) / cols;
  const font = getComputedStyle(document.body).fontFamily;
  ctx.font = `11px ${font}`;
  ctx.textBaseline = 'middle';
  const hot = cssVar('--heat');
  m.ports.forEach((port, i) => {
    ctx.fillStyle = cssVar('--fg');
    ctx.textAlign = 'right';
    ctx.fillText(String(port), labelW - 6, i * row + row / 2);
    m.counts[i]!.forEach((n, j) => {
      if (n === 0) return;
      // Square root: one busy port must not wash out the rest.
      ctx.globalAlpha = 0.15 + 0.85 * Math.sqrt(n / Math.max(1, m.max));
      ctx.fillStyle = hot;
      ctx.fillRect(labelW + j * cellW, i * row + 1, Math.max(1, cellW - 1), row - 2);
      ctx.globalAlpha = 1;
    });
  });
  // Time labels: about five across, local time.
  ctx.fillStyle = cssVar('--muted');
  ctx.textAlign = 'center';
  const step = Math.max(1, Math.ceil(cols / Math.max(2, Math.floor((w - labelW) / 120))));
  for (let j = 0; j < cols; j += step) {
    const d = new Date(m.times[j]!);
    const label =
      m.slotMs >= 86_400_000
        ? d.toLocaleDateString()
        : `${d.toLocaleDateString(undefined, { weekday: 'short' })} ${d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
    ctx.fillText(label, Math.min(w - 40, labelW + j * cellW + 40), m.ports.length * row + axisH / 2);
  }
  return (x, y) => {
    const i = Math.floor(y / row);
    const j = Math.floor((x - labelW) / cellW);
    if (i < 0 || i >= m.ports.length || j < 0 || j >= cols) return null;
    const t = new Date(m.times[j]!);
    return `port ${m.ports[i]}: ${m.counts[i]![j]} flows from ${t.toLocaleString()} (${t.toISOString()})`;
  };
}
