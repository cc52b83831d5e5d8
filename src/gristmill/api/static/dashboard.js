// The gristmill dashboard: jobs with live progress, throughput, failures grouped by
// pattern, search, and a form to start a job. Plain ES modules, no build step, no
// requests beyond this server. Text from the server is only ever set with textContent
// (through h() from dom.js), never parsed as HTML.

import {
  basename, dirname, fmtBytes, fmtClock, fmtDuration, fmtInt, fmtRate, fmtScore, h, shortPath,
} from './dom.js';
import { follow } from './sse.js';
import { drawChart, Series } from './throughput.js';

const TOKEN_KEY = 'gristmill.token';
const JOB_LIMIT = 25;
const POLL_MS = 4000;
// Browsers allow ~6 connections per host over HTTP/1.1: keep some for everything else.
const MAX_STREAMS = 4;
// States whose stream we follow: a paused or interrupted job's stream would only carry
// heartbeats, so polling watches those until they are resumed.
const ACTIVE = new Set(['queued', 'running', 'cancelling']);
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
const JOB_EVENTS = new Set(['state', 'progress', 'heartbeat']);
const FAILURES_SHOWN = 4;

const $ = (selector) => document.querySelector(selector);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) ?? '',
  jobs: new Map(), // id -> the job as the API returns it
  cards: new Map(), // id -> its <li> and the parts updated in place
  streams: new Map(), // id -> AbortController of the stream being followed
  samples: new Map(), // id -> its Series of throughput measured here
  failures: new Map(), // id -> {keys: Set, recent: [failure events], count}
  selected: null, // the job id picked for the chart by a click (null: automatic)
  blocked: false, // a 401 stops polling until another token is entered
  readOnly: false, // a 403 named the token read-only
  searchSeq: 0,
};

function toast(text) {
  const el = h('div', { class: 'toast' }, text);
  $('#toasts').append(el);
  setTimeout(() => el.remove(), 7000);
}

function setMessage(el, text, kind = '') {
  el.textContent = text;
  el.dataset.kind = kind;
}

// -- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

function setAuth(kind, text) {
  const el = $('#auth-status');
  el.dataset.state = kind;
  el.textContent = text;
  $('#token').setAttribute('aria-invalid', kind === 'required' ? 'true' : 'false');
}

/** The error a refused response carries: the API's `{"detail": "..."}` sentence. */
async function apiError(response) {
  let detail = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (typeof body?.detail === 'string') detail = body.detail;
  } catch { /* not JSON: keep the status line */ }
  if (response.status === 403 && /read-only/.test(detail)) {
    state.readOnly = true;
    setAuth('ok', 'connected · read-only');
  }
  if (response.status === 401) {
    state.blocked = true;
    setAuth('required', 'token required');
    detail = 'token required: enter the API token at the top right';
  }
  return new ApiError(response.status, detail);
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = authHeaders();
  // Every state change is JSON, body or not: the server refuses any other content type
  // on POST and DELETE, which is what keeps other sites' pages from forging them.
  if (method !== 'GET') headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    setAuth('down', 'server unreachable');
    throw new ApiError(0, 'the server could not be reached');
  }
  if (!response.ok) throw await apiError(response);
  setAuth('ok', state.readOnly ? 'connected · read-only' : 'connected');
  return response.status === 204 ? null : response.json();
}

// -- jobs ------------------------------------------------------------------------------

const total = (job) => Object.values(job.items ?? {}).reduce((a, b) => a + b, 0);

function createCard(id) {
  const button = (label, action, extra = '') => h('button', {
    type: 'button', class: extra, 'data-action': action, 'aria-label': `${label} job ${id}`,
    onclick: (event) => { event.stopPropagation(); steer(id, action); },
  }, label);
  const parts = {
    badge: h('span', { class: 'badge' }),
    collection: h('span', { class: 'job-collection' }),
    pause: button('Pause', 'pause'),
    resume: button('Resume', 'resume'),
    cancel: button('Cancel', 'cancel', 'danger'),
    sources: h('div', { class: 'job-sources' }),
    indexed: h('span', { class: 'seg-indexed' }),
    skipped: h('span', { class: 'seg-skipped' }),
    failed: h('span', { class: 'seg-failed' }),
    count: h('span', { class: 'done-count' }),
    pct: h('span', { class: 'pct' }),
    stats: h('div', { class: 'job-stats' }),
    reason: h('div', { class: 'job-reason' }),
    message: h('div', { class: 'job-message', role: 'status' }),
    failures: h('ul', { class: 'job-failures', 'aria-label': 'Recent failures' }),
  };
  parts.bar = h('div', { class: 'bar', role: 'progressbar', 'aria-label': `Job ${id} progress`,
                         'aria-valuemin': '0' },
                parts.indexed, parts.skipped, parts.failed);
  parts.li = h('li', {
    class: 'job', 'data-job-id': id, tabindex: '0',
    onclick: () => select(id),
    onkeydown: (event) => { if (event.key === 'Enter' && event.target === parts.li) select(id); },
  },
  h('div', { class: 'job-head' },
    h('span', { class: 'job-id' }, `#${id}`), parts.badge, parts.collection,
    h('div', { class: 'job-actions' }, parts.pause, parts.resume, parts.cancel)),
  parts.sources,
  h('div', { class: 'progress-row' }, parts.bar,
    h('span', { class: 'progress-text' }, parts.count, parts.pct)),
  parts.stats, parts.reason, parts.message, parts.failures);
  return parts;
}

function stat(label, value, kind = '') {
  return h('span', { class: kind }, `${label} `, h('b', {}, value));
}

function renderJob(job) {
  let card = state.cards.get(job.id);
  if (!card) {
    card = createCard(job.id);
    state.cards.set(job.id, card);
  }
  const items = job.items ?? {};
  const all = total(job);
  const done = job.done ?? 0;
  const pct = all ? (100 * done) / all : job.state === 'succeeded' ? 100 : 0;
  card.li.dataset.state = job.state;
  card.li.dataset.kind = job.kind ?? 'ingest';
  card.li.dataset.done = String(done);
  card.li.dataset.total = String(all);
  card.badge.dataset.state = job.state;
  card.badge.textContent = job.state;
  card.collection.textContent = job.collection;
  card.collection.title = `collection ${job.collection}`;
  const sources = (job.sources ?? []).join(', ');
  const patterns = [
    job.include?.length ? `include ${job.include.join(' ')}` : '',
    job.exclude?.length ? `exclude ${job.exclude.join(' ')}` : '',
    job.max_files ? `max ${job.max_files} files` : '',
  ].filter(Boolean).join(' · ');
  card.sources.textContent = patterns ? `${sources} · ${patterns}` : sources;
  card.sources.title = card.sources.textContent;

  for (const [part, status] of [['indexed', null], ['skipped', 'skipped'], ['failed', 'failed']]) {
    const n = status ? items[status] ?? 0 : done - (items.skipped ?? 0) - (items.failed ?? 0);
    card[part].style.width = all ? `${(100 * Math.max(n, 0)) / all}%` : '0%';
  }
  if (!all && job.state === 'succeeded') card.indexed.style.width = '100%';
  card.bar.setAttribute('aria-valuemax', String(all));
  card.bar.setAttribute('aria-valuenow', String(done));
  card.count.textContent = `${fmtInt(done)} / ${fmtInt(all)}`;
  card.pct.textContent = `${Math.floor(pct)}%`;

  const running = job.state === 'running';
  const recent = recentRate(job.id);
  const rate = running && recent !== null ? recent : job.rate ?? 0;
  const elapsed = (job.finished_at ?? Date.now() / 1000) - job.started_at;
  const stats = [stat('indexed', fmtInt(items.indexed ?? 0))];
  if (items.extracted) stats.push(stat('extracted', fmtInt(items.extracted)));
  if (items.skipped) stats.push(stat('skipped', fmtInt(items.skipped), 'warn'));
  if (items.failed) stats.push(stat('failed', fmtInt(items.failed), 'bad'));
  if (job.kind === 'audio') stats.push(...audioStats(job));
  else {
    stats.push(stat('chunks', fmtInt(job.chunks)));
    if (job.pages) stats.push(stat('pages', fmtInt(job.pages)));
  }
  stats.push(stat('read', fmtBytes(job.bytes)));
  stats.push(stat('rate', `${fmtRate(rate)}/s`));
  if (running && rate > 0 && all > done) stats.push(stat('ETA', fmtDuration((all - done) / rate)));
  stats.push(stat('started', fmtClock(job.started_at)));
  stats.push(stat(FINAL.has(job.state) ? 'took' : 'age', fmtDuration(elapsed)));
  if (job.runs > 1) stats.push(stat('runs', String(job.runs)));
  card.stats.replaceChildren(...stats);
  // Why it paused or failed by itself (a refused embedding credential): text, never markup.
  card.reason.textContent = job.reason ? `Paused: ${job.reason}` : '';
  if (job.reason && job.state !== 'paused') card.reason.textContent = job.reason;
  card.reason.hidden = !job.reason;

  card.pause.hidden = job.state !== 'running';
  card.resume.hidden = !['paused', 'interrupted', 'failed'].includes(job.state);
  card.cancel.hidden = !['running', 'queued', 'paused', 'interrupted'].includes(job.state);
  renderFailures(job.id);
}

/** An audio scan's figures (its run's `phases.audio`): recordings, audio, speed, events. */
function audioStats(job) {
  const audio = job.phases?.audio;
  const who = job.audio?.user ? [stat('user', job.audio.user)] : [];
  if (!audio) return who;
  const hours = (audio.audio_seconds ?? 0) / 3600;
  return [
    ...who,
    stat('recordings', `${fmtInt(audio.recordings)} / ${fmtInt(audio.total)}`),
    stat('audio', `${hours.toFixed(hours >= 10 ? 1 : 2)} h`),
    stat('speed', `${fmtRate(audio.realtime_factor ?? 0)}× real time`),
    stat('events', fmtInt(audio.events)),
  ];
}

function renderFailures(id) {
  const card = state.cards.get(id);
  const { recent = [], count = 0 } = state.failures.get(id) ?? {};
  if (!card) return;
  const shown = recent.slice(-FAILURES_SHOWN).reverse().map((f) => h('li', {},
    h('span', { class: 'badge', 'data-status': f.status }, f.status),
    h('span', { class: 'src', title: f.source }, basename(f.source ?? `item ${f.item_id}`)),
    h('span', { class: 'why', title: f.error },
      f.error_type ? `${f.error_type}: ${f.error}` : f.error)));
  if (count > FAILURES_SHOWN) {
    shown.push(h('li', { class: 'why' },
      `and ${fmtInt(count - FAILURES_SHOWN)} more: see Failures by pattern`));
  }
  card.failures.replaceChildren(...shown);
}

function placeCards() {
  const list = $('#jobs');
  const ids = [...state.jobs.keys()].sort((a, b) => b - a);
  for (const [id, card] of state.cards) {
    if (!state.jobs.has(id)) { card.li.remove(); state.cards.delete(id); }
  }
  if (!ids.length) {
    const text = state.blocked ? 'Token required: enter the API token at the top right.'
      : 'No jobs yet: start one above.';
    list.replaceChildren(h('li', { class: 'empty' }, text));
    return;
  }
  list.querySelector(':scope > .empty')?.remove();
  ids.forEach((id, i) => {
    const li = state.cards.get(id).li;
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] ?? null);
  });
  for (const [id, card] of state.cards) card.li.classList.toggle('selected', id === chartJobId());
}

/** Take in a job snapshot from a stream or the list; start following it if it runs. */
function upsertJob(job) {
  const before = state.jobs.get(job.id);
  state.jobs.set(job.id, job);
  renderJob(job);
  if (before && !FINAL.has(before.state) && FINAL.has(job.state)) {
    // A job ended: its failures are now in the grouped report, its items in the counts.
    loadErrors();
    loadHealth();
  }
  if (ACTIVE.has(job.state)) startStream(job.id);
}

function startStream(id) {
  if (state.streams.has(id) || state.streams.size >= MAX_STREAMS) return;
  const controller = new AbortController();
  state.streams.set(id, controller);
  follow(`/api/v1/jobs/${id}/events`, {
    headers: authHeaders,
    signal: controller.signal,
    onEvent: (event) => onJobEvent(id, event),
    onRefused: async (response) => {
      const error = await apiError(response);
      const card = state.cards.get(id);
      if (response.status === 404) state.jobs.delete(id);
      else if (card && response.status !== 401) setMessage(card.message, error.detail, 'error');
    },
  }).finally(() => {
    if (state.streams.get(id) === controller) state.streams.delete(id);
    placeCards();
  });
}

function stopStreams() {
  for (const controller of state.streams.values()) controller.abort();
  state.streams.clear();
}

function onJobEvent(id, event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return true; // a malformed event: skip it, keep following
  }
  if (event.type === 'failure') {
    addFailure(id, data);
    return true;
  }
  if (!JOB_EVENTS.has(event.type)) return true; // an event type this page does not know
  recordSample(data);
  upsertJob(data);
  placeCards();
  if (chartJobId() === id) renderChart();
  return ACTIVE.has(data.state);
}

function addFailure(id, failure) {
  let seen = state.failures.get(id);
  if (!seen) state.failures.set(id, seen = { keys: new Set(), recent: [], count: 0 });
  // A resumed job announces its earlier failures again: count each item once.
  const key = `${failure.item_id}|${failure.status}|${failure.error}`;
  if (seen.keys.has(key)) return;
  seen.keys.add(key);
  seen.count += 1;
  seen.recent.push(failure);
  if (seen.recent.length > FAILURES_SHOWN) seen.recent.shift();
  renderFailures(id);
}

async function steer(id, action) {
  const card = state.cards.get(id);
  const [method, path] = {
    pause: ['POST', `/jobs/${id}/pause`],
    resume: ['POST', `/jobs/${id}/resume`],
    cancel: ['DELETE', `/jobs/${id}`],
  }[action];
  const buttons = card.li.querySelectorAll('.job-actions button');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const job = await api(path, { method });
    setMessage(card.message, '');
    upsertJob(job);
    placeCards();
  } catch (error) {
    // A read-only token gets 403, a finished job 409: say so, keep the page working.
    setMessage(card.message, error.detail, 'error');
    toast(`Job #${id}: ${error.detail}`);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

async function loadJobs() {
  try {
    const jobs = await api(`/jobs?limit=${JOB_LIMIT}`);
    const seen = new Set();
    for (const job of jobs) {
      seen.add(job.id);
      // A followed job's stream is fresher than the list, except when the list shows it
      // ended (the stream may be between reconnects).
      if (state.streams.has(job.id) && !FINAL.has(job.state)) continue;
      upsertJob(job);
    }
    for (const id of [...state.jobs.keys()]) {
      if (!seen.has(id) && !state.streams.has(id)) state.jobs.delete(id);
    }
  } catch (error) {
    if (error.status === 401) state.jobs.clear();
    else toast(`Jobs: ${error.detail}`);
  }
  placeCards();
  renderChart();
}

function select(id) {
  state.selected = state.selected === id ? null : id;
  placeCards();
  renderChart();
}

// -- throughput ------------------------------------------------------------------------

/** Record a snapshot of a job into its series; the clock starts when it runs. */
function recordSample(job) {
  const series = state.samples.get(job.id);
  if (series) series.record(job);
  else if (job.state === 'running') state.samples.set(job.id, new Series(job));
}

function recentRate(id) {
  return state.samples.get(id)?.recent() ?? null;
}

function chartJobId() {
  if (state.selected !== null && state.jobs.has(state.selected)) return state.selected;
  const jobs = [...state.jobs.values()].sort((a, b) => b.id - a.id);
  const running = jobs.find((job) => job.state === 'running');
  if (running) return running.id;
  const measured = jobs.find((job) => state.samples.get(job.id)?.points.length);
  return measured ? measured.id : null;
}

function renderChart() {
  const box = $('#throughput');
  const id = chartJobId();
  const series = id === null ? null : state.samples.get(id);
  const label = $('#throughput-label');
  if (!series?.points.length) {
    label.textContent = id === null ? '' : `job #${id}`;
    const text = id === null ? 'Items per second appear here while a job runs.'
      : `Job #${id} has not been measured running from this page yet.`;
    box.replaceChildren(h('p', { class: 'empty' }, text));
    box.setAttribute('aria-label', text);
    return;
  }
  const now = fmtRate(series.recent() ?? 0);
  const mean = fmtRate(series.mean());
  const ended = state.jobs.get(id)?.state !== 'running';
  label.textContent = `job #${id} · ${ended ? 'last' : 'now'} ${now}/s · mean ${mean}/s`;
  box.setAttribute('aria-label', `Job ${id}: ${now} items per second, mean ${mean}`);
  drawChart(box, series);
}

// -- failures grouped by pattern -------------------------------------------------------

async function loadErrors() {
  const box = $('#errors');
  const note = $('#errors-note');
  let groups;
  try {
    groups = await api('/errors');
  } catch (error) {
    box.replaceChildren(h('p', { class: 'empty message', 'data-kind': 'error' }, error.detail));
    note.textContent = '';
    return;
  }
  const items = groups.reduce((a, g) => a + g.count, 0);
  note.textContent = groups.length
    ? `${fmtInt(items)} item${items === 1 ? '' : 's'} · ${fmtClock(Date.now() / 1000)}` : '';
  if (!groups.length) {
    box.replaceChildren(h('p', { class: 'empty' }, 'No failed or skipped items.'));
    return;
  }
  box.replaceChildren(h('ul', { class: 'groups' }, groups.map((group) => h('li', { class: 'group' },
    h('div', { class: 'group-head' },
      h('span', { class: 'group-count' }, fmtInt(group.count)),
      h('span', { class: 'badge', 'data-status': group.status }, group.status),
      h('span', { class: 'group-pattern' }, group.pattern)),
    h('ul', { class: 'examples' }, (group.examples ?? []).map((example) => {
      const why = example.error ?? example.reason ?? '';
      return h('li', {},
        h('span', { class: 'src', title: example.source }, basename(example.source)),
        h('span', { class: 'why', title: why }, why));
    }))))));
}

// -- health ----------------------------------------------------------------------------

async function loadHealth() {
  let health;
  try {
    health = await api('/health');
  } catch {
    $('#health').replaceChildren();
    return;
  }
  const items = health.catalog?.items ?? health.items ?? {};
  const vectors = Object.values(health.index?.vectors ?? {}).reduce((a, b) => a + b, 0);
  const embedder = health.embedder?.name ?? health.embedder ?? '–';
  const entry = (label, value) => h('div', {}, h('dt', {}, label), h('dd', {}, value));
  $('#health').replaceChildren(
    entry('items', fmtInt(Object.values(items).reduce((a, b) => a + b, 0))),
    entry('indexed', fmtInt(items.indexed ?? 0)),
    entry('failed', fmtInt(items.failed ?? 0)),
    entry('chunks', fmtInt(health.index?.chunks ?? health.chunks ?? 0)),
    ...(embedder === 'none' ? [] : [entry('vectors', fmtInt(vectors))]),
    entry('embedder', String(embedder)));
  const vector = $('#search-mode option[value="vector"]');
  vector.disabled = embedder === 'none';
  vector.textContent = vector.disabled ? 'vector (no embedder)' : 'vector';
}

// -- search ----------------------------------------------------------------------------

/**
 * The hit's snippet with the query's words wrapped in <mark>, as text nodes only. The
 * server counts `highlights` offsets in code points (Python string indices); a JS string
 * counts UTF-16 units, in which an emoji is two, so the snippet is split into code points
 * first. Offsets that are out of order or out of range are ignored, not trusted.
 */
function marked(snippet, highlights) {
  const chars = Array.from(String(snippet ?? ''));
  const parts = [];
  let at = 0;
  for (const [start, end] of Array.isArray(highlights) ? highlights : []) {
    if (!(Number.isInteger(start) && Number.isInteger(end))) continue;
    if (start < at || end <= start || end > chars.length) continue;
    if (start > at) parts.push(chars.slice(at, start).join(''));
    parts.push(h('mark', {}, chars.slice(start, end).join('')));
    at = end;
  }
  if (at < chars.length) parts.push(chars.slice(at).join(''));
  return parts;
}

async function search(event) {
  event.preventDefault();
  const query = $('#search-q').value.trim();
  const mode = $('#search-mode').value;
  const message = $('#search-message');
  const results = $('#search-results');
  if (!query) {
    setMessage(message, 'Type something to search for.');
    return;
  }
  const seq = ++state.searchSeq;
  setMessage(message, 'Searching…');
  const began = performance.now();
  let hits;
  try {
    hits = await api(`/search?${new URLSearchParams({ q: query, k: '10', mode })}`);
  } catch (error) {
    if (seq !== state.searchSeq) return;
    setMessage(message, error.detail, 'error');
    results.replaceChildren();
    return;
  }
  if (seq !== state.searchSeq) return; // a later search answered first
  const ms = Math.round(performance.now() - began);
  const count = `${hits.length} hit${hits.length === 1 ? '' : 's'}`;
  setMessage(message, `${count} for “${query}” · ${mode} · ${ms} ms`);
  results.replaceChildren(...hits.map((hit) => {
    const meta = [
      hit.page ? `page ${hit.page}` : '',
      hit.heading ?? '',
      hit.collection ? `collection ${hit.collection}` : '',
    ].filter(Boolean).join(' · ');
    return h('li', { class: 'hit', 'data-source': hit.source },
      h('div', { class: 'hit-head' },
        h('span', { class: 'hit-name', title: hit.source }, basename(hit.source)),
        h('span', { class: 'hit-score' },
          `score ${fmtScore(hit.score)}`)),
      h('div', { class: 'hit-path', title: hit.source }, shortPath(dirname(hit.source))),
      meta ? h('div', { class: 'hit-meta' }, meta) : null,
      h('p', { class: 'hit-text' }, marked(hit.snippet, hit.highlights)));
  }));
  results.scrollTop = 0;
}

// -- start a job -----------------------------------------------------------------------

const globs = (text) => text.split(/[,\n]/).map((g) => g.trim()).filter(Boolean);

async function startJob(event) {
  event.preventDefault();
  const message = $('#job-form-message');
  const source = $('#job-source').value.trim();
  if (!source) {
    setMessage(message, 'Give the folder to ingest (an absolute path).', 'error');
    $('#job-source').focus();
    return;
  }
  const body = {
    source,
    collection: $('#job-collection').value.trim() || 'default',
    include: globs($('#job-include').value),
    exclude: globs($('#job-exclude').value),
  };
  const maxFiles = $('#job-max-files').value.trim();
  if (maxFiles) body.max_files = Number(maxFiles);
  const submit = $('#job-submit');
  submit.disabled = true;
  setMessage(message, 'Starting…');
  try {
    const job = await api('/jobs', { method: 'POST', body });
    setMessage(message, `Job #${job.id} queued.`, 'ok');
    state.selected = null; // the chart follows the new job once it runs
    upsertJob(job);
    placeCards();
  } catch (error) {
    setMessage(message, error.detail, 'error');
  } finally {
    submit.disabled = false;
  }
}

// -- wiring ----------------------------------------------------------------------------

/** Ask the server what the token may do, so a read-only one is labelled at once. */
async function loadScope() {
  const asked = state.token;
  try {
    const who = await api('/token');
    if (state.token !== asked) return; // the user switched tokens meanwhile
    state.readOnly = who.scope === 'read';
    setAuth('ok', state.readOnly ? 'connected · read-only' : 'connected');
  } catch { /* 401 and unreachable are shown by api() */ }
}

function refreshAll() {
  loadScope();
  loadJobs();
  loadHealth();
  loadErrors();
}

function useToken(event) {
  event.preventDefault();
  state.token = $('#token').value.trim();
  if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
  else sessionStorage.removeItem(TOKEN_KEY);
  state.blocked = false;
  state.readOnly = false;
  setAuth('', 'checking…');
  stopStreams(); // reopened with the new token as the jobs list comes back
  state.jobs.clear();
  refreshAll();
}

function init() {
  $('#token').value = state.token;
  $('#token-form').addEventListener('submit', useToken);
  $('#job-form').addEventListener('submit', startJob);
  $('#search-form').addEventListener('submit', search);
  $('#jobs-refresh').addEventListener('click', () => { state.blocked = false; loadJobs(); });
  $('#errors-refresh').addEventListener('click', () => { state.blocked = false; loadErrors(); });
  let resizeTimer;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderChart, 100);
  });
  setInterval(() => {
    if (state.blocked || document.hidden) return;
    loadJobs();
    loadHealth();
  }, POLL_MS);
  refreshAll();
}

init();
