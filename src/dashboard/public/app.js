// The fleet dashboard: every figure on the page comes from the public GraphQL API with the user's token.
import { createApi, GraphQLFailure, NetworkFailure } from './api.js';

// ── Operations ──────────────────────────────────────────────────────────────────────────────────────
// Named, so they read well in server logs and traces; each panel asks for what it shows and no more.

const SESSION = `query DashboardSession {
  viewer { tenant role agent { id } }
  config
}`;

// The agent tiles are counted from the agents panel's list, which knows who went quiet since.
const OVERVIEW = `query Overview {
  systemOverview { namespaces entries revision errorsLastHour openInsights }
}`;

const AGENT_FIELDS = 'id name type status active lastHeartbeatAt heartbeat capabilities';
const AGENTS = `query Agents { agents { ${AGENT_FIELDS} } }`;
const AGENT_CHANGED = `subscription AgentChanged { agentChanged { ${AGENT_FIELDS} } }`;

const METRIC_NAMES = 'query MetricNames { metricSummary { name } }';
const METRIC = `query Metric($name: String!, $since: DateTime!, $bucketSeconds: Int!) {
  metricSeries(name: $name, since: $since, bucketSeconds: $bucketSeconds) { at count avg min max }
  metricSummary(name: $name, since: $since) { count avg p50 p95 p99 last unit }
}`;
const METRIC_RECORDED = 'subscription MetricRecorded { metricRecorded { name } }';

const ERROR_FIELDS = 'id type fingerprint sampleMessage count firstSeenAt lastSeenAt agentIds';
const ERRORS = `query ErrorPatterns { errorPatterns { ${ERROR_FIELDS} } }`;
const ERROR_REPORTED = `subscription ErrorReported { errorReported { ${ERROR_FIELDS} } }`;

const INSIGHT_FIELDS = 'id type content priority sourceAgentId createdAt actedUpon actedUponAt';
const INSIGHTS = `query Insights($minPriority: Priority, $actedUpon: Boolean) {
  insights(minPriority: $minPriority, actedUpon: $actedUpon, first: 100) { ${INSIGHT_FIELDS} }
}`;
const INSIGHT_ADDED = `subscription InsightAdded($minPriority: Priority) { insightAdded(minPriority: $minPriority) { ${INSIGHT_FIELDS} } }`;
const MARK_ACTED_UPON = `mutation MarkInsightActedUpon($id: ID!) { markInsightActedUpon(id: $id) { ${INSIGHT_FIELDS} } }`;

const CHANGE_FIELDS = 'revision op namespace scope key version value at actor';
const HEAD = 'query Head { systemOverview { revision } }';
const LATEST_CHANGES = `query LatestChanges($first: Int!) { latestChanges(first: $first) { ${CHANGE_FIELDS} } }`;
const ENTRY_CHANGED = `subscription EntryChanged($afterRevision: Revision) { entryChanged(afterRevision: $afterRevision) { ${CHANGE_FIELDS} } }`;

const NAMESPACES = 'query Namespaces { namespaces { name description sensitive openAccess entryCount } }';
const ENTRIES = `query Entries($namespace: String!, $prefix: String, $after: String) {
  entries(namespace: $namespace, prefix: $prefix, first: 50, after: $after) {
    nodes { scope key value version updatedAt updatedBy expiresAt }
    pageInfo { hasNextPage endCursor }
  }
}`;
const HISTORY = `query EntryHistory($namespace: String!, $scope: String!, $key: String!) {
  entryHistory(namespace: $namespace, scope: $scope, key: $key, first: 50) { version revision op value at actor }
}`;

// ── Small helpers ───────────────────────────────────────────────────────────────────────────────────

const TOKEN_KEY = 'statehouse.dashboard.token';
const STATUSES = ['STARTING', 'IDLE', 'BUSY', 'ERROR', 'STOPPED'];
/** What the page shows for an agent: its reported status while active, else INACTIVE. */
const AGENT_STATES = [...STATUSES, 'INACTIVE'];
const PRIORITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];
/** The feed opens with this many of the latest changes and keeps up to FEED_LENGTH. */
const FEED_FIRST = 50;
const FEED_LENGTH = 200;

const $ = (selector, root = document) => root.querySelector(selector);

/** An element; children are elements or text, never parsed as HTML. */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name in element) element[name] = value;
    else element.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) element.append(typeof child === 'object' ? child : String(child));
  }
  return element;
}

/** Now by the gateway's clock (see api.now), which stamped the times shown. */
const now = () => session?.api.now() ?? Date.now();

function ago(iso, at = now()) {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((at - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** A relative time that the ticker below keeps current. */
const age = (iso) =>
  iso
    ? h('time', { class: 'age', dateTime: iso, title: new Date(iso).toLocaleString() }, ago(iso))
    : h('span', { class: 'muted' }, 'never');

const figure = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function compact(value, max = 140) {
  const text = JSON.stringify(value) ?? '';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A value as JSON, or why there is none: deleted, expired, or withheld from this token. */
function valueCell(value, op = 'SET') {
  if (op !== 'SET') return h('span', { class: 'muted' }, '—');
  if (value === null || value === undefined)
    return h('span', { class: 'muted hidden-value', title: 'Not readable with this token' }, 'hidden');
  return h('code', { class: 'value', title: compact(value, 4000) }, compact(value));
}

const badge = (text, kind = text) => h('span', { class: `badge ${String(kind).toLowerCase()}` }, text);

/** A table; a heading ending in `#` is a right-aligned number column. */
const table = (headings, rows) =>
  h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headings.map((heading) => (heading.endsWith('#') ? h('th', { class: 'number' }, heading.slice(0, -1)) : h('th', {}, heading))),
      ),
    ),
    h('tbody', {}, rows),
  );

/** Replaces a panel's content with a state message: loading, empty, forbidden or error. */
function showState(slot, state, text) {
  slot.replaceChildren(h('p', { class: `state ${state}`, dataset: { state } }, text));
}

/** Runs at most one `task` at a time; a call while one runs runs it once more afterwards. */
function serial(task) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await task();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  return run;
}

function debounce(fn, ms) {
  let timer;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

/**
 * Runs `fn` at once, then at most once every `ms` while calls keep coming; the last call always leads to a
 * run. Unlike a debounce, a steady stream of events (a busy fleet) cannot postpone it forever.
 */
function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  const run = () => {
    pending = false;
    fn();
    timer = setTimeout(() => {
      timer = null;
      if (pending) run();
    }, ms);
  };
  const throttled = () => {
    if (timer) pending = true;
    else run();
  };
  throttled.cancel = () => clearTimeout(timer);
  return throttled;
}

/**
 * A list kept current: `items` (by id) is read with `query`, then each `subscription` event replaces its
 * item. The subscription starts first, so a change made during the read is not lost; many events a second
 * are drawn once a frame.
 */
function liveList(s, { slot, loading, items, query, variables = () => ({}), read, subscription, event, render, onEvent = () => {} }) {
  let loaded = false;
  let frame = 0;
  const draw = () => {
    frame = 0;
    render();
  };
  const refresh = serial(async () => {
    try {
      const data = await s.api.request(query, variables());
      items.clear();
      for (const item of read(data)) items.set(item.id, item);
      loaded = true;
      draw();
    } catch (error) {
      showFailure(slot, error);
    }
  });
  showState(slot, 'loading', loading);
  s.live(
    subscription,
    () => ({}),
    (data) => {
      const item = event(data);
      items.set(item.id, item);
      if (loaded && !frame) frame = requestAnimationFrame(draw);
      onEvent(item);
    },
    (error) => showFailure(slot, error),
  );
  void refresh();
  return refresh;
}

// ── Session: sign-in, sign-out, the socket's state ─────────────────────────────────────────────────

let session = null;

function setView(view) {
  document.body.dataset.view = view;
}

function showSignIn(message) {
  setView('signin');
  const error = $('#signin-error');
  error.hidden = !message;
  error.textContent = message ?? '';
  $('#signin-form button').disabled = false;
  $('#token').focus();
}

function signOut(message) {
  session?.close();
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  // Nothing the last token could read stays in the page.
  for (const element of document.querySelectorAll(
    '#dashboard [data-slot], #overview, #metric-summary, #browser .body > *, .panel header .muted, #who',
  )) {
    element.replaceChildren();
  }
  showSignIn(message);
}

async function onSignIn(event) {
  event.preventDefault();
  const input = $('#token');
  const token = input.value.trim();
  if (!token) return;
  $('#signin-form button').disabled = true;
  if (await open(token)) input.value = '';
}

function showConnection(state, detail) {
  const pill = $('#connection');
  const banner = $('#banner');
  pill.dataset.state = state;
  if (state === 'rejected') {
    signOut('The gateway no longer accepts this token. Sign in again.');
    return;
  }
  pill.textContent = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' }[state] ?? state;
  banner.hidden = state !== 'reconnecting';
  if (state === 'reconnecting') {
    const seconds = Math.max(1, Math.round((detail.inMs ?? 1000) / 1000));
    banner.textContent = `The live connection dropped. Reconnecting in about ${seconds} s; figures may be out of date until then.`;
  }
}

/** What a failed request means for a panel; an unusable token ends the session. */
function showFailure(slot, error) {
  if (error instanceof GraphQLFailure && error.code === 'UNAUTHENTICATED') {
    signOut('The gateway no longer accepts this token. Sign in again.');
  } else if (error instanceof GraphQLFailure && error.code === 'FORBIDDEN') {
    showState(slot, 'forbidden', 'This token may not see this.');
  } else if (error instanceof NetworkFailure) {
    showState(slot, 'error', 'The gateway cannot be reached; retrying.');
  } else {
    showState(slot, 'error', error.message);
  }
}

/** Signs in with `token`: checks it, then mounts every panel. Returns whether it worked. */
async function open(token) {
  session?.close();
  // A subscription is registered a moment after its socket connects, and a read may have raced it; so
  // shortly after every (re)connection the panels read again. The feed needs no such help: it resumes
  // after the last revision it showed.
  const api = createApi(token, {
    onStatus: showConnection,
    onConnected: () => setTimeout(() => session?.api === api && session.refreshAll(), 1000),
  });
  let viewer;
  let config;
  try {
    ({ viewer, config } = await api.request(SESSION));
  } catch (error) {
    api.close();
    if (error instanceof NetworkFailure && sessionStorage.getItem(TOKEN_KEY) === token) {
      setView('boot');
      $('#boot').textContent = 'The gateway cannot be reached. Trying again…';
      setTimeout(() => open(token), 3000);
      return false;
    }
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(error instanceof GraphQLFailure && error.code === 'UNAUTHENTICATED' ? 'This token is not valid.' : error.message);
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);

  const disposers = [];
  const s = {
    api,
    viewer,
    activeWindowSeconds: config?.activeWindowSeconds ?? 300,
    canAct: viewer.role === 'ADMIN' || viewer.role === 'AGENT',
    onDispose: (fn) => disposers.push(fn),
    every: (ms, fn) => {
      const id = setInterval(fn, ms);
      disposers.push(() => clearInterval(id));
    },
    live: (query, variables, onData, onError) => disposers.push(api.subscribe(query, variables, onData, onError)),
    close: () => {
      for (const dispose of disposers.splice(0)) dispose();
      api.close();
    },
  };
  session = s;
  $('#who').textContent = `${viewer.tenant} · ${viewer.role}${viewer.agent ? ` · ${viewer.agent.id}` : ''}`;
  showConnection('connecting', {});
  setView('dashboard');

  const overview = mountOverview(s);
  const agents = mountAgents(s);
  const metrics = mountMetrics(s);
  const errors = mountErrors(s);
  const insights = mountInsights(s);
  const browser = mountBrowser(s);
  mountFeed(s, {
    onChange: (change) => {
      overview.soon();
      browser.changed(change);
    },
  });
  overview.onChange((now, before) => {
    if (before && now.openInsights !== before.openInsights) insights.refresh();
    if (before && (now.namespaces !== before.namespaces || now.entries !== before.entries)) browser.refreshNamespaces();
  });
  agents.onChange(overview.showFleet);
  errors.onChange(overview.soon);
  s.refreshAll = () => [overview, agents, metrics, errors, insights, browser].forEach((panel) => panel.refresh());
  s.every(1000, () => {
    const at = now();
    for (const time of document.querySelectorAll('time.age')) time.textContent = ago(time.dateTime, at);
    agents.tick(at);
    metrics.tick();
  });
  return true;
}

// ── Overview tiles ──────────────────────────────────────────────────────────────────────────────────

function mountOverview(s) {
  const root = $('#overview');
  const listeners = [];
  let last = null;
  let fleet = null;
  const tile = (key, label, value, sub, tone) =>
    h(
      'div',
      { class: `tile${tone ? ` ${tone}` : ''}`, dataset: { tile: key } },
      h('span', { class: 'label' }, label),
      h('strong', { class: 'value' }, value),
      sub ? h('span', { class: 'sub' }, sub) : null,
    );

  function render() {
    if (!last) return;
    root.setAttribute('aria-busy', 'false');
    root.replaceChildren(
      tile(
        'activeAgents',
        'Active agents',
        fleet ? figure.format(fleet.active) : '…',
        fleet ? `of ${figure.format(fleet.total)} registered` : null,
      ),
      h(
        'div',
        { class: 'tile statuses', dataset: { tile: 'agentsByStatus' } },
        h('span', { class: 'label' }, 'Agents by status'),
        h(
          'div',
          { class: 'status-counts' },
          AGENT_STATES.filter((state) => fleet?.byState[state]).map((state) =>
            h('span', { dataset: { status: state } }, badge(state), ` ${fleet.byState[state]}`),
          ),
          fleet?.total === 0 ? h('span', { class: 'muted' }, 'none yet') : null,
        ),
      ),
      tile('namespaces', 'Namespaces', figure.format(last.namespaces)),
      tile('entries', 'Entries', figure.format(last.entries)),
      tile('revision', 'Revision', last.revision),
      tile('errorsLastHour', 'Errors, last hour', figure.format(last.errorsLastHour), null, last.errorsLastHour > 0 ? 'warn' : null),
      tile('openInsights', 'Open insights', figure.format(last.openInsights)),
    );
  }

  const refresh = serial(async () => {
    let overview;
    try {
      ({ systemOverview: overview } = await s.api.request(OVERVIEW));
    } catch (error) {
      if (!last) showFailure(root, error);
      return;
    }
    const before = last;
    last = overview;
    render();
    for (const listener of listeners) listener(overview, before);
  });

  showState(root, 'loading', 'Loading overview…');
  void refresh();
  // systemOverview is one cheap query, meant to be polled; events in between make it sooner.
  s.every(5000, () => document.hidden || refresh());
  const onVisible = () => document.hidden || refresh();
  document.addEventListener('visibilitychange', onVisible);
  s.onDispose(() => document.removeEventListener('visibilitychange', onVisible));
  const soon = throttle(refresh, 1000);
  s.onDispose(soon.cancel);
  return {
    refresh,
    soon,
    onChange: (listener) => listeners.push(listener),
    /** The agent tiles: `counts` as the agents panel counts them. */
    showFleet: (counts) => {
      fleet = counts;
      render();
    },
  };
}

// ── Agents ──────────────────────────────────────────────────────────────────────────────────────────

function mountAgents(s) {
  const slot = $('#agents [data-slot]');
  const typeFilter = $('#agent-type');
  const statusFilter = $('#agent-status');
  const agents = new Map();
  const listeners = [];
  /** Each agent's state as last drawn, to notice when one goes quiet. */
  let drawn = '';

  statusFilter.replaceChildren(h('option', { value: '' }, 'all'), ...AGENT_STATES.map((state) => h('option', { value: state }, state)));
  typeFilter.replaceChildren(h('option', { value: '' }, 'all'));
  // `active` is the gateway's word when the agent was read; it lapses once the last heartbeat is older than
  // the tenant's activeWindowSeconds, by the gateway's clock, until a heartbeat brings the agent back.
  const stateOf = (agent, at = now()) =>
    agent.active && agent.lastHeartbeatAt !== null && at - Date.parse(agent.lastHeartbeatAt) <= s.activeWindowSeconds * 1000
      ? agent.status
      : 'INACTIVE';
  const states = (at) => [...agents.values()].map((agent) => `${agent.id}\u0000${stateOf(agent, at)}`).join('\u0001');

  function counts(at) {
    const byState = {};
    for (const agent of agents.values()) {
      const state = stateOf(agent, at);
      byState[state] = (byState[state] ?? 0) + 1;
    }
    return { byState, total: agents.size, active: agents.size - (byState.INACTIVE ?? 0) };
  }

  function render() {
    const at = now();
    drawn = states(at);
    for (const listener of listeners) listener(counts(at));
    const types = [...new Set([...agents.values()].map((agent) => agent.type))].sort();
    const chosenType = typeFilter.value;
    typeFilter.replaceChildren(h('option', { value: '' }, 'all'), ...types.map((type) => h('option', { value: type }, type)));
    typeFilter.value = types.includes(chosenType) ? chosenType : '';
    if (agents.size === 0) return showState(slot, 'empty', 'No agents registered yet. registerAgent adds one.');
    const shown = [...agents.values()]
      .filter(
        (agent) =>
          (!typeFilter.value || agent.type === typeFilter.value) && (!statusFilter.value || stateOf(agent, at) === statusFilter.value),
      )
      .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    if (shown.length === 0) return showState(slot, 'empty', 'No agent matches these filters.');
    const rows = shown.map((agent) => {
      const state = stateOf(agent, at);
      return h(
        'tr',
        { class: state === 'INACTIVE' ? 'inactive' : '', dataset: { agentId: agent.id, status: state } },
        h('td', {}, h('strong', {}, agent.name), agent.name !== agent.id ? h('span', { class: 'muted id' }, agent.id) : null),
        h('td', {}, agent.type),
        h(
          'td',
          { class: 'status' },
          badge(state),
          state === 'INACTIVE' && agent.lastHeartbeatAt !== null
            ? h('span', { class: 'muted last-status', title: 'The status of its last heartbeat' }, ` last ${agent.status}`)
            : null,
        ),
        h('td', { class: 'heartbeat', title: agent.heartbeat === null ? '' : compact(agent.heartbeat, 2000) }, age(agent.lastHeartbeatAt)),
        h(
          'td',
          {},
          agent.capabilities.length
            ? agent.capabilities.map((capability) => h('span', { class: 'chip' }, capability))
            : h('span', { class: 'muted' }, '—'),
        ),
      );
    });
    slot.replaceChildren(table(['Agent', 'Type', 'Status', 'Last heartbeat', 'Capabilities'], rows));
  }
  typeFilter.onchange = render;
  statusFilter.onchange = render;
  const refresh = liveList(s, {
    slot,
    loading: 'Loading agents…',
    items: agents,
    query: AGENTS,
    read: (data) => data.agents,
    subscription: AGENT_CHANGED,
    event: (data) => data.agentChanged,
    render,
  });
  return {
    refresh,
    onChange: (listener) => listeners.push(listener),
    /** Redraws when an agent's heartbeat has aged out of the window. */
    tick: (at) => {
      if (drawn && states(at) !== drawn) render();
    },
  };
}

// ── Metrics ─────────────────────────────────────────────────────────────────────────────────────────

/** Each window's bucket in seconds: 60 to 96 buckets, so that one point is one visible step. */
const BUCKETS = { 300: 5, 3600: 60, 86400: 900 };
const CHART_HEIGHT = 220;

const clockTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const clockMinute = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
/** An axis tick: the minute, with seconds only where the tick has some. */
const tickTime = (seconds) => (seconds % 60 === 0 ? clockMinute : clockTime).format(seconds * 1000);

/** The index nearest to `idx` whose bucket holds points, so that hovering a gap shows its neighbour's figures. */
function nearestWithData(values, idx) {
  if (idx === null || idx === undefined) return null;
  for (let distance = 0; distance < values.length; distance++) {
    if (values[idx - distance] != null) return idx - distance;
    if (values[idx + distance] != null) return idx + distance;
  }
  return null;
}

/** A value alone between empty buckets draws no line: its point marks it. */
function isolated(u, seriesIdx) {
  const values = u.data[seriesIdx];
  return values.flatMap((value, i) => (value != null && values[i - 1] == null && values[i + 1] == null ? [i] : []));
}

/** The y range: from 0 (or below the lowest negative value) to a margin above the highest, so no line runs along the edge. */
function valueRange(min, max) {
  if (min === null || max === null) return [0, 1];
  const low = Math.min(0, min);
  const span = max - low || Math.abs(max) || 1;
  return [low < 0 ? low - span * 0.1 : 0, max + span * 0.15];
}

function mountMetrics(s) {
  const slot = $('#metrics [data-slot]');
  const nameSelect = $('#metric-name');
  const windowSelect = $('#metric-window');
  const chartBox = $('#metric-chart');
  const summaryBox = $('#metric-summary');
  const names = new Set();
  let plot = null;
  let unit = '';

  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const windowRange = () => {
    const now = s.api.now() / 1000;
    return [now - Number(windowSelect.value), now];
  };

  /** Every bucket of the window, null where no point fell: the lines break there instead of bridging the gap. */
  function buckets(points, bucketSeconds) {
    const [from, to] = windowRange();
    const byStart = new Map(points.map((point) => [Date.parse(point.at) / 1000, point]));
    const data = [[], [], []];
    for (let at = Math.floor(from / bucketSeconds) * bucketSeconds; at <= to; at += bucketSeconds) {
      const point = byStart.get(at);
      data[0].push(at);
      data[1].push(point?.avg ?? null);
      data[2].push(point?.max ?? null);
    }
    return data;
  }

  // Without the cursor on the chart the legend shows the latest bucket that holds points.
  const legendIdx = (u, idx) => idx ?? nearestWithData(u.data[1], u.data[1].length - 1);
  const legendValue = (u, seriesIdx, idx) => {
    const value = u.data[seriesIdx][legendIdx(u, idx)];
    return value == null ? '—' : `${figure.format(value)}${unit}`;
  };
  const legendTime = (u, idx) => {
    const at = u.data[0][legendIdx(u, idx)];
    return at === undefined ? '—' : clockTime.format(at * 1000);
  };

  function draw(data) {
    if (plot) return plot.setData(data);
    const axis = { stroke: css('--muted'), grid: { stroke: css('--grid'), width: 1 }, ticks: { stroke: css('--grid'), width: 1 } };
    plot = new window.uPlot(
      {
        width: Math.max(chartBox.clientWidth, 200),
        height: CHART_HEIGHT,
        scales: { x: { time: true, range: windowRange }, y: { range: (_u, min, max) => valueRange(min, max) } },
        series: [
          { label: 'time', value: (u, _value, _seriesIdx, idx) => legendTime(u, idx) },
          {
            label: 'avg',
            stroke: css('--accent'),
            fill: css('--accent-soft'),
            width: 2,
            spanGaps: false,
            points: { show: true, size: 5 },
            value: (u, _value, seriesIdx, idx) => legendValue(u, seriesIdx, idx),
          },
          {
            label: 'max',
            stroke: css('--muted'),
            width: 1.5,
            dash: [4, 4],
            spanGaps: false,
            points: { show: true, size: 4, filter: isolated },
            value: (u, _value, seriesIdx, idx) => legendValue(u, seriesIdx, idx),
          },
        ],
        axes: [
          { ...axis, space: 70, values: (_u, ticks) => ticks.map(tickTime) },
          { ...axis, size: 60, values: (_u, ticks) => ticks.map((tick) => figure.format(tick)) },
        ],
        cursor: { dataIdx: (u, _seriesIdx, idx) => nearestWithData(u.data[1], idx) },
        legend: { live: true },
      },
      data,
      chartBox,
    );
  }
  const resize = new ResizeObserver(() => plot?.setSize({ width: Math.max(chartBox.clientWidth, 200), height: CHART_HEIGHT }));
  resize.observe(chartBox);
  s.onDispose(() => {
    resize.disconnect();
    plot?.destroy();
    plot = null;
    chartBox.dataset.points = '0';
  });

  function showSummary(summary) {
    const item = (key, label, value) => h('div', { dataset: { figure: key } }, h('dt', {}, label), h('dd', {}, value));
    const format = (value) => (summary ? `${figure.format(value)}${unit}` : '—');
    summaryBox.replaceChildren(
      item('count', 'points', summary ? figure.format(summary.count) : '0'),
      item('p50', 'p50', format(summary?.p50)),
      item('p95', 'p95', format(summary?.p95)),
      item('p99', 'p99', format(summary?.p99)),
      item('avg', 'avg', format(summary?.avg)),
      item('last', 'last', format(summary?.last)),
    );
  }

  const load = serial(async () => {
    const name = nameSelect.value;
    if (!name) return;
    const bucketSeconds = BUCKETS[windowSelect.value];
    const since = new Date(windowRange()[0] * 1000).toISOString();
    try {
      const { metricSeries, metricSummary } = await s.api.request(METRIC, { name, since, bucketSeconds });
      if (name !== nameSelect.value || bucketSeconds !== BUCKETS[windowSelect.value]) return;
      unit = metricSummary[0]?.unit ? ` ${metricSummary[0].unit}` : '';
      chartBox.hidden = false;
      chartBox.dataset.points = String(metricSeries.length);
      showSummary(metricSummary[0]);
      draw(buckets(metricSeries, bucketSeconds));
      if (metricSeries.length === 0) showState(slot, 'empty', 'No points in this window.');
      else slot.replaceChildren();
    } catch (error) {
      showFailure(slot, error);
    }
  });
  const loadSoon = throttle(load, 500);
  s.onDispose(loadSoon.cancel);

  function showNames() {
    const chosen = nameSelect.value;
    const list = [...names].sort();
    nameSelect.replaceChildren(...list.map((name) => h('option', { value: name }, name)));
    nameSelect.value = list.includes(chosen) ? chosen : (list[0] ?? '');
    if (list.length > 0) return;
    chartBox.hidden = true;
    showSummary(null);
    showState(slot, 'empty', 'No metrics recorded in the last 24 h. Agents send them with recordMetrics.');
  }

  // One subscription for every metric: a name not seen before joins the list at once, and a point of the
  // chosen metric reads its figures again (percentiles cannot be updated from one point).
  s.live(
    METRIC_RECORDED,
    () => ({}),
    ({ metricRecorded: { name } }) => {
      if (!names.has(name)) {
        const first = names.size === 0;
        names.add(name);
        showNames();
        if (first) return void load();
      }
      if (name === nameSelect.value) loadSoon();
    },
    (error) => showFailure(slot, error),
  );

  const refresh = serial(async () => {
    let summaries;
    try {
      ({ metricSummary: summaries } = await s.api.request(METRIC_NAMES));
    } catch (error) {
      return showFailure(slot, error);
    }
    for (const summary of summaries) names.add(summary.name);
    showNames();
    await load();
  });
  nameSelect.onchange = () => void load();
  windowSelect.onchange = () => void load();
  showState(slot, 'loading', 'Loading metrics…');
  void refresh();
  // Points arrive live; every 30 s the figures are read again as the window slides on.
  s.every(30_000, () => document.hidden || refresh());
  return {
    refresh,
    // The chart's window follows the clock between reads.
    tick: () => {
      const [min, max] = windowRange();
      plot?.setScale('x', { min, max });
    },
  };
}

// ── Error patterns ──────────────────────────────────────────────────────────────────────────────────

function mountErrors(s) {
  const slot = $('#errors [data-slot]');
  const patterns = new Map();
  const listeners = [];

  function render() {
    if (patterns.size === 0) return showState(slot, 'empty', 'No errors reported in the last 24 h.');
    const rows = [...patterns.values()]
      .sort((a, b) => b.count - a.count || Date.parse(b.lastSeenAt) - Date.parse(a.lastSeenAt))
      .slice(0, 50)
      .map((pattern) =>
        h(
          'tr',
          { dataset: { patternId: pattern.id } },
          h('td', {}, badge(pattern.type, 'type')),
          h('td', { class: 'message', title: pattern.fingerprint }, pattern.sampleMessage),
          h('td', { class: 'number' }, figure.format(pattern.count)),
          h('td', {}, age(pattern.firstSeenAt)),
          h('td', {}, age(pattern.lastSeenAt)),
          h('td', {}, pattern.agentIds.join(', ') || '—'),
        ),
      );
    slot.replaceChildren(table(['Type', 'Message', 'Count#', 'First seen', 'Last seen', 'Agents'], rows));
  }

  const refresh = liveList(s, {
    slot,
    loading: 'Loading error patterns…',
    items: patterns,
    query: ERRORS,
    read: (data) => data.errorPatterns,
    subscription: ERROR_REPORTED,
    event: (data) => data.errorReported,
    render,
    onEvent: () => listeners.forEach((listener) => listener()),
  });
  return { refresh, onChange: (listener) => listeners.push(listener) };
}

// ── Insights ────────────────────────────────────────────────────────────────────────────────────────

function mountInsights(s) {
  const slot = $('#insights [data-slot]');
  const priorityFilter = $('#insight-priority');
  const actedFilter = $('#insight-acted');
  const insights = new Map();
  const rank = (priority) => PRIORITIES.indexOf(priority);
  const matches = (insight) =>
    (!priorityFilter.value || rank(insight.priority) >= rank(priorityFilter.value)) && (actedFilter.checked || !insight.actedUpon);

  async function markActedUpon(insight, button) {
    button.disabled = true;
    try {
      const { markInsightActedUpon } = await s.api.request(MARK_ACTED_UPON, { id: insight.id });
      insights.set(insight.id, markInsightActedUpon);
      render();
    } catch (error) {
      button.disabled = false;
      button.title = error.message;
    }
  }

  function render() {
    const shown = [...insights.values()]
      .filter(matches)
      .sort((a, b) => rank(b.priority) - rank(a.priority) || Date.parse(b.createdAt) - Date.parse(a.createdAt));
    if (shown.length === 0) return showState(slot, 'empty', actedFilter.checked ? 'No insights yet.' : 'No open insights.');
    slot.replaceChildren(
      h(
        'ul',
        { class: 'insights' },
        shown.map((insight) =>
          h(
            'li',
            { class: insight.actedUpon ? 'acted' : '', dataset: { insightId: insight.id, priority: insight.priority } },
            h(
              'div',
              { class: 'insight-head' },
              badge(insight.priority),
              h('strong', {}, insight.type),
              h('span', { class: 'muted' }, insight.sourceAgentId ? `from ${insight.sourceAgentId}` : 'from an admin'),
              age(insight.createdAt),
            ),
            h('code', { class: 'value', title: compact(insight.content, 4000) }, compact(insight.content, 240)),
            insight.actedUpon
              ? h('span', { class: 'muted acted-note' }, 'acted upon ', age(insight.actedUponAt))
              : s.canAct
                ? h(
                    'button',
                    { type: 'button', class: 'small', onclick: (event) => markActedUpon(insight, event.currentTarget) },
                    'Mark acted upon',
                  )
                : null,
          ),
        ),
      ),
    );
  }

  const refresh = liveList(s, {
    slot,
    loading: 'Loading insights…',
    items: insights,
    query: INSIGHTS,
    variables: () => ({ minPriority: priorityFilter.value || null, actedUpon: actedFilter.checked ? null : false }),
    read: (data) => data.insights,
    subscription: INSIGHT_ADDED,
    event: (data) => data.insightAdded,
    render,
  });
  priorityFilter.onchange = () => void refresh();
  actedFilter.onchange = () => void refresh();
  return { refresh };
}

// ── Change feed ─────────────────────────────────────────────────────────────────────────────────────

/**
 * The feed opens with the latest changes (`latestChanges`), then continues with `entryChanged` after the
 * newest of them, and after a dropped socket resumes where it stopped: no gap, no duplicate. It remembers
 * the last revision it saw and which keys of that revision it has shown (the changes of one commit share a
 * revision and could be split by a drop), and resubscribes just before that revision, skipping what it
 * already showed.
 */
function mountFeed(s, { onChange }) {
  const slot = $('#feed [data-slot]');
  const positionLabel = $('#feed-position');
  const list = h('ol', { class: 'feed' });
  let position = null;
  let shown = 0;
  let stop = null;
  let retry;

  const idOf = (change) => JSON.stringify([change.namespace, change.scope, change.key]);
  const label = () => {
    positionLabel.textContent = `live after revision ${position.revision}`;
  };

  function variables() {
    const { revision, seen } = position;
    return { afterRevision: seen.length > 0 && revision !== '0' ? String(BigInt(revision) - 1n) : revision };
  }

  function show(change) {
    if (shown === 0) {
      for (const state of slot.querySelectorAll('[data-state]')) state.remove();
      slot.append(list);
    }
    shown++;
    const path = `${change.namespace} / ${change.scope} / ${change.key}`;
    list.prepend(
      h(
        'li',
        { dataset: { revision: change.revision, namespace: change.namespace, key: change.key, op: change.op } },
        h('span', { class: 'revision', title: 'revision' }, change.revision),
        badge(change.op),
        h('span', { class: 'path', title: path }, h('strong', {}, change.namespace), ` / ${change.scope} / `, h('strong', {}, change.key)),
        h('span', { class: 'muted version' }, `v${change.version}`),
        h('span', { class: 'feed-value' }, valueCell(change.value, change.op)),
        h('span', { class: 'muted actor', title: change.actor ?? '' }, change.actor ?? ''),
        age(change.at),
      ),
    );
    while (list.childElementCount > FEED_LENGTH) list.lastElementChild.remove();
  }

  function receive({ entryChanged: change }) {
    const id = idOf(change);
    if (change.revision === position.revision) {
      if (position.seen.includes(id)) return;
      position.seen.push(id);
    } else if (BigInt(change.revision) < BigInt(position.revision)) {
      return;
    } else {
      position = { revision: change.revision, seen: [id] };
    }
    label();
    show(change);
    onChange(change);
  }

  function subscribe() {
    stop = s.api.subscribe(ENTRY_CHANGED, variables, receive, (error) => {
      if (error.code === 'REVISION_COMPACTED' && error.extensions.oldestRevision) {
        slot.prepend(
          h(
            'p',
            { class: 'state notice' },
            `Changes before revision ${error.extensions.oldestRevision} were compacted and cannot be shown.`,
          ),
        );
        position = { revision: String(error.extensions.oldestRevision), seen: [] };
        subscribe();
      } else if (error.code === 'BAD_USER_INPUT') {
        // The revision is not of this database (it was replaced while the page was open): start afresh.
        list.replaceChildren();
        shown = 0;
        void open();
      } else showFailure(slot, error);
    });
  }

  async function open() {
    let head;
    let latest;
    try {
      // The head first: a change after it is either in the list read next or delivered by the subscription.
      ({
        systemOverview: { revision: head },
      } = await s.api.request(HEAD));
      ({ latestChanges: latest } = await s.api.request(LATEST_CHANGES, { first: FEED_FIRST }));
    } catch (error) {
      if (error instanceof NetworkFailure) retry = setTimeout(open, 3000);
      return showFailure(slot, error);
    }
    for (const change of [...latest].reverse()) show(change);
    position = { revision: latest[0]?.revision ?? head, seen: [] };
    label();
    if (shown === 0) showState(slot, 'empty', 'No changes yet. New changes appear here as they happen.');
    subscribe();
  }
  s.onDispose(() => {
    clearTimeout(retry);
    stop?.();
  });

  showState(slot, 'loading', 'Loading the latest changes…');
  void open();
  return {};
}

// ── Namespace browser ───────────────────────────────────────────────────────────────────────────────

function mountBrowser(s) {
  const nav = $('#namespace-list');
  const entriesBox = $('#entry-list');
  const historyBox = $('#entry-history');
  const path = $('#browser-path');
  let namespaces = [];
  let current = null; // { namespace, prefix }
  let entry = null; // { scope, key }

  function renderNamespaces() {
    if (namespaces.length === 0) return showState(nav, 'empty', 'No namespaces this token can read.');
    nav.replaceChildren(
      h(
        'ul',
        {},
        namespaces.map((namespace) =>
          h(
            'li',
            {},
            h(
              'button',
              {
                type: 'button',
                class: `namespace${current?.namespace === namespace.name ? ' selected' : ''}`,
                dataset: { namespace: namespace.name },
                title: namespace.description ?? '',
                onclick: () => openNamespace(namespace.name),
              },
              h('span', {}, namespace.name),
              namespace.sensitive ? badge('sensitive') : null,
              namespace.openAccess ? null : badge('restricted'),
              h('span', { class: 'count' }, figure.format(namespace.entryCount)),
            ),
          ),
        ),
      ),
    );
  }

  const refreshNamespaces = serial(async () => {
    try {
      ({ namespaces } = await s.api.request(NAMESPACES));
      renderNamespaces();
    } catch (error) {
      showFailure(nav, error);
    }
  });

  const isSensitive = (name) => namespaces.find((namespace) => namespace.name === name)?.sensitive === true;
  const updatePath = () => {
    path.textContent = current ? `${current.namespace}${entry ? ` › ${entry.scope} / ${entry.key}` : ''}` : '';
  };

  const prefixInput = h('input', {
    type: 'search',
    placeholder: 'Filter by key prefix',
    'aria-label': 'Key prefix',
    oninput: debounce(() => {
      if (!current) return;
      current.prefix = prefixInput.value;
      void loadEntries();
    }, 250),
  });
  const entriesBody = h('div');

  async function loadEntries(after = null) {
    const { namespace, prefix } = current;
    if (!after) showState(entriesBody, 'loading', 'Loading entries…');
    let page;
    try {
      ({ entries: page } = await s.api.request(ENTRIES, { namespace, prefix: prefix || null, after }));
    } catch (error) {
      return showFailure(entriesBody, error);
    }
    if (current?.namespace !== namespace || current.prefix !== prefix) return;
    const rows = page.nodes.map((node) =>
      h(
        'tr',
        {
          class: entry?.key === node.key && entry?.scope === node.scope ? 'selected' : '',
          dataset: { key: node.key, scope: node.scope },
          tabIndex: 0,
          onclick: () => openEntry(node.scope, node.key),
          onkeydown: (event) => event.key === 'Enter' && openEntry(node.scope, node.key),
        },
        h('td', {}, node.scope),
        h('td', {}, h('strong', {}, node.key)),
        h('td', { class: 'number' }, node.version),
        h('td', {}, age(node.updatedAt)),
        h('td', {}, valueCell(node.value)),
      ),
    );
    const body = entriesBody.querySelector('tbody');
    if (after && body) body.append(...rows);
    else if (rows.length === 0) showState(entriesBody, 'empty', prefix ? 'No key starts with this prefix.' : 'This namespace is empty.');
    else {
      entriesBody.replaceChildren(table(['Scope', 'Key', 'v#', 'Updated', 'Value'], rows));
    }
    entriesBody.querySelector('.more')?.remove();
    if (page.pageInfo.hasNextPage) {
      entriesBody.append(
        h('button', { type: 'button', class: 'small more', onclick: () => loadEntries(page.pageInfo.endCursor) }, 'Load more'),
      );
    }
  }

  async function loadHistory() {
    const { namespace } = current;
    const { scope, key } = entry;
    // A refresh of the history on show keeps it on screen until the new one arrives (no flicker).
    const shown = JSON.stringify([namespace, scope, key]);
    if (historyBox.dataset.shows !== shown) showState(historyBox, 'loading', 'Loading history…');
    historyBox.dataset.shows = shown;
    let versions;
    try {
      ({ entryHistory: versions } = await s.api.request(HISTORY, { namespace, scope, key }));
    } catch (error) {
      delete historyBox.dataset.shows;
      return showFailure(historyBox, error);
    }
    if (current?.namespace !== namespace || entry?.key !== key || entry?.scope !== scope) return;
    historyBox.replaceChildren(
      h('h3', {}, 'History of ', h('strong', {}, key)),
      versions.length === 0
        ? h('p', { class: 'state empty', dataset: { state: 'empty' } }, 'No history.')
        : h(
            'ol',
            { class: 'history' },
            versions.map((version) =>
              h(
                'li',
                { dataset: { version: version.version } },
                h('span', { class: 'muted' }, `v${version.version}`),
                badge(version.op),
                valueCell(version.value, version.op),
                h('span', { class: 'muted actor' }, version.actor ?? ''),
                age(version.at),
              ),
            ),
          ),
      ...(isSensitive(namespace)
        ? [h('p', { class: 'muted' }, 'A sensitive namespace: values are shown only to tokens allowed to read them.')]
        : []),
    );
  }

  function openNamespace(name) {
    current = { namespace: name, prefix: '' };
    entry = null;
    prefixInput.value = '';
    entriesBox.replaceChildren(h('div', { class: 'entries-head' }, prefixInput), entriesBody);
    historyBox.replaceChildren();
    delete historyBox.dataset.shows;
    renderNamespaces();
    updatePath();
    void loadEntries();
  }

  function openEntry(scope, key) {
    entry = { scope, key };
    updatePath();
    for (const row of entriesBox.querySelectorAll('tr[data-key]'))
      row.classList.toggle('selected', row.dataset.key === key && row.dataset.scope === scope);
    void loadHistory();
  }

  // The open namespace and entry follow the feed.
  const reloadEntries = throttle(() => current && !entriesBody.querySelector('.more') && loadEntries(), 500);
  const reloadHistory = throttle(() => current && entry && loadHistory(), 500);
  s.onDispose(reloadEntries.cancel);
  s.onDispose(reloadHistory.cancel);

  showState(nav, 'loading', 'Loading namespaces…');
  showState(entriesBox, 'empty', 'Choose a namespace.');
  void refreshNamespaces();
  return {
    refresh: () => {
      void refreshNamespaces();
      if (current) void loadEntries();
      if (current && entry) void loadHistory();
    },
    refreshNamespaces,
    changed: (change) => {
      if (change.namespace !== current?.namespace) return;
      reloadEntries();
      if (entry && change.key === entry.key && change.scope === entry.scope) reloadHistory();
    },
  };
}

// ── Start ───────────────────────────────────────────────────────────────────────────────────────────

$('#signin-form').addEventListener('submit', onSignIn);
$('#sign-out').addEventListener('click', () => signOut());
const stored = sessionStorage.getItem(TOKEN_KEY);
if (stored) void open(stored);
else showSignIn();
