// Building elements and formatting numbers for the dashboard. Text is only ever set as
// text nodes or textContent: nothing the server sends is parsed as HTML.

/** An element; strings among `children` become text nodes (never HTML). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== null) el.textContent = text;
  return el;
}

const numberFormat = new Intl.NumberFormat('en-US');
export const fmtInt = (n) => numberFormat.format(n ?? 0);

export function fmtBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  const i = Math.min(Math.floor(Math.log(n) / Math.log(1024)), units.length - 1);
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function fmtClock(unixSeconds) {
  if (!unixSeconds) return '–';
  const date = new Date(unixSeconds * 1000);
  const time = date.toLocaleTimeString('en-GB', { hour12: false });
  return date.toDateString() === new Date().toDateString()
    ? time : `${date.toISOString().slice(0, 10)} ${time}`;
}

export const fmtRate = (r) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2));
export const dirname = (path) => String(path).replace(/[\\/][^\\/]*$/, '') || '/';
export const basename = (path) => String(path).replace(/[\\/]+$/, '').split(/[\\/]/).pop() || path;

export function fmtScore(score) {
  if (typeof score !== 'number') return '–';
  return Math.abs(score) >= 0.01 || score === 0 ? score.toPrecision(3) : score.toExponential(2);
}

export function shortPath(path, max = 56) {
  const text = String(path);
  return text.length <= max ? text : `…${text.slice(-(max - 1))}`;
}
