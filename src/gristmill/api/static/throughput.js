// Throughput measured in the page: items/s from successive snapshots of a job (done
// delta over time delta), and the chart of it, drawn as inline SVG.

import { fmtDuration, svg } from './dom.js';

const MIN_INTERVAL_S = 0.4; // rate intervals shorter than this are merged (reconnect bursts)
const MAX_POINTS = 1200;
const RECENT_RATE_S = 3;

/** One job's measured intervals: `{t, dt, delta, rate}` each, `t` when it ended. */
export class Series {
  constructor(job) {
    this.anchor = { t: performance.now() / 1000, done: job.done };
    this.points = [];
    this.ended = false;
  }

  /** Take in a snapshot of the job (a `state`, `progress` or `heartbeat` event). */
  record(job) {
    const now = performance.now() / 1000;
    if (this.ended) {
      // Resumed: measure again from here (the time it was paused is not a zero rate).
      if (job.state === 'running') {
        this.ended = false;
        this.anchor = { t: now, done: job.done };
      }
      return;
    }
    const dt = now - this.anchor.t;
    if (dt < MIN_INTERVAL_S && job.state === 'running') return;
    const delta = Math.max(0, job.done - this.anchor.done);
    this.points.push({ t: now, dt, delta, rate: delta / Math.max(dt, 1e-3) });
    if (this.points.length > MAX_POINTS) this.points.shift();
    this.anchor = { t: now, done: job.done };
    if (job.state !== 'running') this.ended = true;
  }

  /** Items/s lately, or null before the first interval. */
  recent() {
    return this.points.length ? windowRate(this.points, this.points.length - 1) : null;
  }

  /** Items/s over every measured interval. */
  mean() {
    const delta = this.points.reduce((a, p) => a + p.delta, 0);
    const dt = this.points.reduce((a, p) => a + p.dt, 0);
    return dt ? delta / dt : 0;
  }
}

/** Items/s over the intervals ending in the last RECENT_RATE_S before point `end`:
 *  counters move in batches, so single intervals swing between 0 and a burst. */
function windowRate(points, end) {
  let delta = 0;
  let dt = 0;
  for (let i = end; i >= 0; i--) {
    const p = points[i];
    if (points[end].t - p.t >= RECENT_RATE_S && dt > 0) break;
    delta += p.delta;
    dt += p.dt;
  }
  return dt > 0 ? delta / dt : 0;
}

function niceCeiling(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

/** Draw `series` into `box`: one bar per interval (while they are wide enough to read),
 *  a line of the recent rate, a dashed line at the mean. */
export function drawChart(box, series) {
  const points = series.points;
  const start = points[0].t - points[0].dt;
  const span = Math.max(points.at(-1).t - start, 10);
  const mean = series.mean();
  const smooth = points.map((_, i) => windowRate(points, i));
  const top = niceCeiling(Math.max(...smooth, mean) * 1.15);
  const width = Math.max(box.clientWidth, 200);
  const height = Math.max(box.clientHeight, 120);
  const m = { left: 44, right: 14, top: 12, bottom: 22 };
  const x = (t) => m.left + ((t - start) / span) * (width - m.left - m.right);
  const y = (r) => height - m.bottom - (r / top) * (height - m.top - m.bottom);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true' });
  const grid = svg('g', { class: 'grid' });
  const axis = svg('g', { class: 'axis' });
  for (let i = 0; i <= 4; i++) {
    const value = (top * i) / 4;
    grid.append(svg('line', { x1: m.left, x2: width - m.right, y1: y(value), y2: y(value) }));
    axis.append(svg('text', { x: m.left - 6, y: y(value) + 3, 'text-anchor': 'end' },
                    value >= 10 ? value.toFixed(0) : String(+value.toFixed(2))));
  }
  for (const f of [0, 0.5, 1]) {
    axis.append(svg('text', { x: x(start + f * span), y: height - 6,
                              'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' },
                    f === 0 ? '0 s' : fmtDuration(f * span)));
  }
  const bars = svg('g', { class: 'bars' });
  const wide = (x(points.at(-1).t) - x(start)) / points.length >= 3;
  for (const p of wide ? points : []) {
    const x0 = x(p.t - p.dt) + 0.5;
    const w = Math.max(x(p.t) - x0 - 0.5, 0.5);
    const yTop = y(Math.min(p.rate, top));
    bars.append(svg('rect', { x: x0.toFixed(1), y: yTop.toFixed(1), width: w.toFixed(1),
                              height: Math.max(y(0) - yTop, 0).toFixed(1) }));
  }
  const coords = [[x(start), y(smooth[0])], ...points.map((p, i) => [x(p.t), y(smooth[i])])];
  const line = coords.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`)
    .join('');
  const base = y(0).toFixed(1);
  const area = `${line}L${coords.at(-1)[0].toFixed(1)},${base}L${coords[0][0].toFixed(1)},${base}Z`;
  root.append(grid, bars,
    svg('path', { class: 'area', d: area }),
    svg('line', { class: 'mean', x1: m.left, x2: width - m.right, y1: y(mean), y2: y(mean) }),
    svg('path', { class: 'line', d: line }),
    axis);
  box.replaceChildren(root);
}
