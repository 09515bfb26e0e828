/*
 * p2p-otel-testkit: the trace viewer, browser side. Plain ES2020, no dependencies.
 *
 * Two modes, one file:
 *  - live: served by the receiver (`serve`); data from /api/search and /api/traces/<id>,
 *    refreshed when /api/stream sends `changed`; beside traces, /api/metrics and /api/logs
 *    (polled every few seconds while their page shows: they do not trigger `changed`), and,
 *    when `serve` has a contract, /api/contract and /api/findings/<id>;
 *  - static: the self-contained export inlines this file next to a JSON script element with
 *    id "p2p-otel-data" holding { search, traces } and optionally { metrics, logs, contract,
 *    findings } (the API answers, findings keyed by trace id); nothing is fetched, and a page
 *    whose data the export lacks says it needs `serve`.
 *
 * Security: the page runs under a strict Content-Security-Policy and shows names and values
 * that anyone able to send spans controls. So the DOM is built with createElement and
 * textContent only (never an HTML-parsing property or method), and styles are set through CSSOM
 * (element.style), which the CSP allows. The static export inlines this file into a script
 * element: it must never contain the character sequence that closes one.
 *
 * Sections: constants, state, DOM helpers, formatting helpers, OTLP helpers, throttled
 * loader, virtual rows, data loading, router, shell, list view, trace model, trace view,
 * findings on the trace page, pages beside traces, metrics page, logs page, contract page,
 * boot.
 */
(function () {
  'use strict';

  // ======================================================================== constants

  const LIST_ROW_H = 28; // px; must match .trace-row in app.css
  const SPAN_ROW_H = 24; // px; must match .span-row in app.css
  const OVERSCAN = 8; // rows rendered beyond each edge of the viewport
  const RENDER_ALL_UP_TO = 150; // short lists are rendered whole (cheap, and all in the DOM)
  const REFRESH_GAP_MS = 500; // live refresh: at most one request started per interval
  const MIN_WINDOW_NS = 1000; // a 0-duration trace still gets a 1 µs time axis
  const MAX_INDENT_DEPTH = 40; // deeper spans stop indenting (the name column is finite)
  const FLAG_REMOTE_PARENT = 0x200; // OTLP span flags: bit 0x100 = "known", 0x200 = remote
  const PALETTE = [
    '#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948',
    '#9c755f', '#ff9da7', '#17becf', '#bcbd22', '#6b6ecf', '#8c8c8c',
  ];
  const KIND_NAMES = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
  const STATUS_NAMES = ['unset', 'ok', 'error'];
  const TITLE = 'p2p-otel-testkit — traces';
  const TITLE_BASE = 'p2p-otel-testkit';

  const LOG_ROW_H = 24; // px; must match .log-row in app.css
  const AUTO_REFRESH_MS = 5000; // metrics and logs: polled while their page shows
  const CHART_W = 320; // metric charts, CSS px (the canvas is scaled for the device)
  const CHART_H = 90;
  const QUANTILES = [
    { q: 0.5, label: 'p50', colour: '#1f883d' },
    { q: 0.95, label: 'p95', colour: '#bf8700' },
    { q: 0.99, label: 'p99', colour: '#cf222e' },
  ];
  const LINE_COLOUR = '#0969da';
  const SEVERITY_WARN = 13; // OTLP severity numbers: 13–16 WARN, 17–20 ERROR, 21–24 FATAL
  const SEVERITY_ERROR = 17;
  const LEVELS = ['violation', 'improvement', 'information']; // findings, worst first
  const SIGNAL_PAGES = ['metrics', 'logs', 'contract'];

  // ======================================================================== state

  const state = {
    isStatic: false,
    staticData: null,
    page: null, // 'list' | 'trace' | 'metrics' | 'logs' | 'contract'
    query: '', // the TraceQL the list shows (or is loading)
    list: {
      traces: [], // the last good search answer
      filtered: [], // after the local filters
      loaded: false, // a search answer arrived at least once
      awaiting: false, // the shown list is not yet the answer for state.query
      stale: false, // traces changed while the list was not shown
      lastBody: null, // raw text of the last answer: identical answers are not re-rendered
      serviceKey: null,
    },
    filters: { service: '', name: '', errorsOnly: false, minMs: NaN },
    // { id, model, lastBody, selected (row index), selectedId, pendingSpan, zoomed, window,
    //   findings (Map span id -> findings, or null without a contract), findingsSettled }
    trace: null,
    metrics: { lastBody: null, points: null }, // points: the last answer's, null before one
    logs: {
      lastBody: null,
      records: null, // normalised, newest first; null before an answer
      filtered: [],
      text: '', // the #logs-filter text, lowercased
      minSeverity: 0,
    },
    // present: null until /api/contract (or /api/findings) answered; in static mode, whether
    // the export holds a report. body: the report's raw text; renderedBody: the one shown.
    contract: { present: null, report: null, body: null, renderedBody: null },
  };

  const ui = {}; // DOM references of the current views
  let listRows = null; // VirtualRows of the trace list
  let spanRows = null; // VirtualRows of the current waterfall
  let logRows = null; // VirtualRows of the logs table
  let pageTimer = 0; // the auto-refresh interval of the metrics or logs page

  function setReady(value) {
    document.body.dataset.ready = value;
  }

  function clearReady() {
    delete document.body.dataset.ready;
  }

  // ======================================================================== DOM helpers

  // el('div', { class, text, title, ...attributes }, [children]): text goes through
  // textContent, children that are strings become text nodes; nothing is parsed as HTML.
  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const key of Object.keys(props)) {
        const value = props[key];
        if (value == null || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = String(value);
        else node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    if (children) {
      for (const child of children) {
        if (child == null || child === false) continue;
        node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function pct(fraction) {
    return (fraction * 100).toFixed(4) + '%';
  }

  function isTyping(target) {
    const tag = target && target.tagName;
    return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || (target && target.isContentEditable);
  }

  // ======================================================================== formatting helpers

  // Three significant digits, trailing zeros dropped: 850, 12.3, 1.52, 20, 1.5.
  function sig3(x) {
    const digits = x >= 100 ? 0 : x >= 10 ? 1 : 2;
    let text = x.toFixed(digits);
    if (text.indexOf('.') >= 0) text = text.replace(/0+$/, '').replace(/\.$/, '');
    return text;
  }

  const DURATION_UNITS = [['ns', 1], ['µs', 1e3], ['ms', 1e6], ['s', 1e9]];

  // Nanoseconds (a Number) as a human duration: 850µs, 12.3ms, 1.52s, 0ms.
  function fmtDur(ns) {
    if (ns == null || !Number.isFinite(ns)) return '–';
    if (ns === 0) return '0ms';
    const sign = ns < 0 ? '-' : '';
    const v = Math.abs(ns);
    if (v >= 60e9) {
      const total = Math.round(v / 1e9);
      const minutes = Math.floor(total / 60);
      const seconds = total % 60;
      return sign + (minutes >= 60
        ? Math.floor(minutes / 60) + 'h' + (minutes % 60) + 'm'
        : minutes + 'm' + seconds + 's');
    }
    let unit = 0;
    while (unit < DURATION_UNITS.length - 1 && v >= DURATION_UNITS[unit + 1][1]) unit++;
    let text = sig3(v / DURATION_UNITS[unit][1]);
    // 999.7µs rounds to "1000": say 1ms instead.
    if (Number(text) >= 1000 && unit < DURATION_UNITS.length - 1) {
      unit++;
      text = sig3(v / DURATION_UNITS[unit][1]);
    }
    return sign + text + DURATION_UNITS[unit][0];
  }

  function pad(number, width) {
    return String(number).padStart(width, '0');
  }

  // BigInt Unix nanoseconds -> local HH:MM:SS.mmm.
  function fmtClock(nanos) {
    if (nanos == null) return '–';
    const date = new Date(Number(nanos / 1000000n));
    if (Number.isNaN(date.getTime())) return '–';
    return pad(date.getHours(), 2) + ':' + pad(date.getMinutes(), 2) + ':' +
      pad(date.getSeconds(), 2) + '.' + pad(date.getMilliseconds(), 3);
  }

  // BigInt Unix nanoseconds -> local YYYY-MM-DD HH:MM:SS.nnnnnnnnn (for titles and details).
  function fmtDateTime(nanos) {
    if (nanos == null) return '–';
    const date = new Date(Number(nanos / 1000000n));
    if (Number.isNaN(date.getTime())) return '–';
    return date.getFullYear() + '-' + pad(date.getMonth() + 1, 2) + '-' + pad(date.getDate(), 2) +
      ' ' + pad(date.getHours(), 2) + ':' + pad(date.getMinutes(), 2) + ':' +
      pad(date.getSeconds(), 2) + '.' + pad(nanos % 1000000000n, 9);
  }

  // The list's node column: "first 8 characters…" (the full id goes in a title).
  function short8(text) {
    text = String(text);
    return text.length > 8 ? text.slice(0, 8) + '…' : text;
  }

  // Node names on the trace page. libp2p peer ids all start with "12D3KooW", so the tail is
  // kept too: "12D3KooW…x9Ab".
  function shortNode(text) {
    text = String(text);
    return text.length > 14 ? text.slice(0, 8) + '…' + text.slice(-4) : text;
  }

  function plural(count, word) {
    return count + ' ' + word + (count === 1 ? '' : 's');
  }

  // ======================================================================== OTLP helpers

  // OTLP/JSON nanosecond times are decimal strings (beyond 2^53): BigInt, or null when
  // absent, zero or malformed.
  function parseNanos(value) {
    if (value == null || value === '') return null;
    try {
      const nanos = typeof value === 'number' ? BigInt(Math.round(value)) : BigInt(String(value).trim());
      return nanos > 0n ? nanos : null;
    } catch (error) {
      return null;
    }
  }

  function base64ToHex(text) {
    try {
      const binary = atob(text);
      let hex = '';
      for (let i = 0; i < binary.length; i++) hex += binary.charCodeAt(i).toString(16).padStart(2, '0');
      return hex;
    } catch (error) {
      return null;
    }
  }

  // Span and trace ids as lowercase hex; all zeros (= none) as ''. OTLP/JSON says hex, but
  // protobuf's canonical JSON says base64: accept both (base64 of 8 or 16 bytes is 12 or 24
  // characters with padding).
  function normId(value) {
    if (value == null) return '';
    const text = String(value).trim();
    if (text === '') return '';
    let hex = text;
    if (/^[0-9a-fA-F]+$/.test(text)) hex = text.toLowerCase();
    else if ((text.length === 12 || text.length === 24) && /^[A-Za-z0-9+/]+=*$/.test(text)) {
      hex = base64ToHex(text) || text;
    }
    return /^0+$/.test(hex) ? '' : hex;
  }

  // Trace ids compare without leading zeros (Tempo drops them).
  function sameTraceId(a, b) {
    const strip = (id) => String(id).toLowerCase().replace(/^0+/, '');
    return strip(a) === strip(b);
  }

  function kindNumber(kind) {
    if (typeof kind === 'number') return kind;
    if (typeof kind === 'string') {
      const name = kind.toLowerCase().replace(/^span_kind_/, '');
      const index = KIND_NAMES.indexOf(name);
      if (index >= 0) return index;
      const number = Number(kind);
      if (Number.isInteger(number)) return number;
    }
    return 0;
  }

  function statusNumber(code) {
    if (typeof code === 'number') return code;
    if (typeof code === 'string') {
      const name = code.toLowerCase().replace(/^status_code_/, '');
      const index = STATUS_NAMES.indexOf(name);
      if (index >= 0) return index;
      const number = Number(code);
      if (Number.isInteger(number)) return number;
    }
    return 0;
  }

  function kindName(kind) {
    return KIND_NAMES[kind] || 'kind ' + kind;
  }

  function statusName(code) {
    return STATUS_NAMES[code] || 'code ' + code;
  }

  function list(value) {
    return Array.isArray(value) ? value.filter((item) => item != null && typeof item === 'object') : [];
  }

  // An OTLP AnyValue as compact text. Nested strings are quoted so that arrays and kvlists
  // read unambiguously; a value with no field is "(empty)".
  function anyToText(value, nested, depth) {
    depth = depth || 0;
    if (value == null || typeof value !== 'object') return value == null ? '(empty)' : String(value);
    if (depth > 16) return '…';
    if ('stringValue' in value) {
      const text = String(value.stringValue);
      return nested ? JSON.stringify(text) : text;
    }
    if ('intValue' in value) return String(value.intValue);
    if ('doubleValue' in value) return String(value.doubleValue);
    if ('boolValue' in value) return String(value.boolValue);
    if ('bytesValue' in value) {
      const hex = base64ToHex(String(value.bytesValue));
      return hex == null ? 'base64:' + value.bytesValue : '0x' + hex;
    }
    if ('arrayValue' in value) {
      const values = value.arrayValue && Array.isArray(value.arrayValue.values) ? value.arrayValue.values : [];
      return '[' + values.map((item) => anyToText(item, true, depth + 1)).join(', ') + ']';
    }
    if ('kvlistValue' in value) {
      const values = list(value.kvlistValue && value.kvlistValue.values);
      return '{' + values.map((kv) => String(kv.key) + ': ' + anyToText(kv.value, true, depth + 1)).join(', ') + '}';
    }
    return '(empty)';
  }

  function attrValue(attributes, key) {
    const found = list(attributes).find((kv) => kv.key === key);
    return found ? found.value : undefined;
  }

  function attrString(attributes, key) {
    const value = attrValue(attributes, key);
    if (value == null) return '';
    const text = anyToText(value);
    return text === '(empty)' ? '' : text;
  }

  function sortedAttributes(attributes) {
    return list(attributes).slice().sort((a, b) => {
      const x = String(a.key);
      const y = String(b.key);
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }

  // Colour of the i-th node; past the palette, a hue hashed from the name (FNV-1a).
  function nodeColour(index, name) {
    if (index < PALETTE.length) return PALETTE[index];
    let hash = 2166136261;
    for (let i = 0; i < name.length; i++) {
      hash ^= name.charCodeAt(i);
      hash = Math.imul(hash, 16777619);
    }
    return 'hsl(' + ((hash >>> 0) % 360) + ', 55%, 52%)';
  }

  // ======================================================================== throttled loader

  // Runs `task(signal)`: now() at once (cancelling a request in flight, for user actions),
  // soon() at most one in flight and at most one start per REFRESH_GAP_MS, and once more
  // after the current one when asked during it (for live updates).
  function Throttled(task) {
    this.task = task;
    this.controller = null;
    this.pending = false;
    this.timer = 0;
    this.lastStart = -Infinity;
  }

  Throttled.prototype.now = function () {
    this.cancel();
    this.start();
  };

  Throttled.prototype.soon = function () {
    this.pending = true;
    this.pump();
  };

  Throttled.prototype.cancel = function () {
    if (this.controller) this.controller.abort();
    this.controller = null;
    clearTimeout(this.timer);
    this.timer = 0;
    this.pending = false;
  };

  Throttled.prototype.pump = function () {
    if (this.controller || this.timer || !this.pending) return;
    const wait = this.lastStart + REFRESH_GAP_MS - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.pump();
      }, wait);
      return;
    }
    this.start();
  };

  Throttled.prototype.start = function () {
    this.pending = false;
    const controller = new AbortController();
    this.controller = controller;
    this.lastStart = Date.now();
    Promise.resolve()
      .then(() => this.task(controller.signal))
      .catch((error) => {
        if (!controller.signal.aborted) console.error(error);
      })
      .finally(() => {
        if (this.controller === controller) {
          this.controller = null;
          this.pump();
        }
      });
  };

  // ======================================================================== virtual rows

  // A scroll container holding a fixed-height spacer (count × rowHeight); only the rows in
  // view (plus OVERSCAN) exist, absolutely positioned. Rows stay in `rows` (index -> element)
  // while visible so that scrolling does not rebuild them (or lose their focus).
  function VirtualRows(scroller, spacer, rowHeight, build) {
    this.scroller = scroller;
    this.spacer = spacer;
    this.rowHeight = rowHeight;
    this.build = build;
    this.count = 0;
    this.rows = new Map();
    this.frame = 0;
    scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
  }

  VirtualRows.prototype.setCount = function (count) {
    this.count = count;
    this.spacer.style.height = count * this.rowHeight + 'px';
    this.reset();
  };

  // Rebuild every row (the data or its presentation changed).
  VirtualRows.prototype.reset = function () {
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    this.render();
  };

  VirtualRows.prototype.schedule = function () {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  };

  VirtualRows.prototype.render = function () {
    const scroller = this.scroller;
    // The spacer sits below a sticky header inside the scroller; its offsetTop is the
    // header's height (the scroller is position: relative, hence the offsetParent).
    const headerHeight = this.spacer.offsetTop || 0;
    const viewHeight = scroller.clientHeight || 1000; // hidden: render a screenful anyway
    const top = scroller.scrollTop;
    let first = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN);
    let last = Math.min(this.count, Math.ceil((top + viewHeight - headerHeight) / this.rowHeight) + OVERSCAN);
    if (this.count <= RENDER_ALL_UP_TO) {
      first = 0;
      last = this.count;
    }
    for (const [index, row] of this.rows) {
      if (index < first || index >= last) {
        row.remove();
        this.rows.delete(index);
      }
    }
    const fragment = document.createDocumentFragment();
    for (let index = first; index < last; index++) {
      if (this.rows.has(index)) continue;
      const row = this.build(index);
      row.style.top = index * this.rowHeight + 'px';
      this.rows.set(index, row);
      fragment.appendChild(row);
    }
    this.spacer.appendChild(fragment);
  };

  // Scroll so that row `index` is visible: centred, or just into view.
  VirtualRows.prototype.scrollToIndex = function (index, centre) {
    const scroller = this.scroller;
    const headerHeight = this.spacer.offsetTop || 0;
    const viewHeight = scroller.clientHeight;
    const rowTop = index * this.rowHeight; // in scrollTop units: the header is sticky
    const visible = viewHeight - headerHeight;
    if (centre) scroller.scrollTop = Math.max(0, rowTop - (visible - this.rowHeight) / 2);
    else if (rowTop < scroller.scrollTop) scroller.scrollTop = rowTop;
    else if (rowTop + this.rowHeight > scroller.scrollTop + visible) {
      scroller.scrollTop = rowTop + this.rowHeight - visible;
    }
    this.render();
  };

  // ======================================================================== data loading

  function fetchText(url, signal) {
    return fetch(url, { signal, cache: 'no-store', headers: { Accept: 'application/json' } })
      .then((response) => response.text().then((body) => ({ ok: response.ok, status: response.status, body })));
  }

  const searcher = new Throttled(runSearch);
  const traceLoader = new Throttled(loadTrace);

  async function runSearch(signal) {
    if (state.isStatic) {
      applySearch(state.staticData.search);
      return;
    }
    const query = state.query;
    const params = (query.trim() ? 'q=' + encodeURIComponent(query) + '&' : '') + 'limit=0';
    let answer;
    try {
      answer = await fetchText('/api/search?' + params, signal);
    } catch (error) {
      if (signal.aborted) return;
      showListStatus('cannot reach the receiver: ' + error.message);
      state.list.awaiting = false;
      renderList(true);
      return;
    }
    if (signal.aborted || query !== state.query) return;
    if (answer.status === 400) {
      // A bad query: its error (multi-line, with a caret) verbatim; the list stays.
      showQueryError(answer.body);
      state.list.awaiting = false;
      renderList(true);
      return;
    }
    if (!answer.ok) {
      showListStatus('search failed (HTTP ' + answer.status + '): ' + answer.body);
      state.list.awaiting = false;
      renderList(true);
      return;
    }
    showQueryError(null);
    showListStatus(null);
    if (answer.body === state.list.lastBody && !state.list.awaiting) {
      if (state.page === 'list') setReady('list');
      return; // nothing changed: keep the rows (and the focus) as they are
    }
    let json;
    try {
      json = JSON.parse(answer.body);
    } catch (error) {
      showListStatus('the search answer is not JSON: ' + error.message);
      state.list.awaiting = false;
      renderList(true);
      return;
    }
    state.list.lastBody = answer.body;
    applySearch(json);
  }

  function applySearch(json) {
    state.list.traces = list(json && json.traces);
    state.list.loaded = true;
    state.list.awaiting = false;
    state.list.stale = false;
    updateServiceOptions();
    applyFilters();
  }

  function staticTrace(id) {
    const traces = (state.staticData && state.staticData.traces) || {};
    if (Object.prototype.hasOwnProperty.call(traces, id)) return traces[id];
    const key = Object.keys(traces).find((candidate) => sameTraceId(candidate, id));
    return key == null ? null : traces[key];
  }

  async function loadTrace(signal) {
    const trace = state.trace;
    if (!trace || state.page !== 'trace') return;
    const current = () => state.page === 'trace' && state.trace === trace && !signal.aborted;
    let json = null;
    let body = null;
    let error = null;
    if (state.isStatic) {
      json = staticTrace(trace.id);
      if (!json) error = 'trace ' + trace.id + ' is not in this export';
    } else {
      try {
        const answer = await fetchText('/api/traces/' + encodeURIComponent(trace.id), signal);
        if (!current()) return;
        if (!answer.ok) error = answer.body || 'HTTP ' + answer.status;
        else if (answer.body === trace.lastBody) {
          // Unchanged since the last render; its findings too, unless their load was cut short.
          if (trace.findingsSettled) setReady('trace');
          else await loadTraceFindings(trace, signal);
          return;
        } else {
          body = answer.body;
          json = JSON.parse(body);
        }
      } catch (failure) {
        if (!current()) return;
        error = 'cannot load the trace: ' + failure.message;
      }
    }
    if (!current()) return;
    if (error) {
      showTraceError(error);
      return;
    }
    trace.lastBody = body;
    trace.model = buildModel(json, trace.id);
    // The waterfall shows at once; "ready" waits for the findings (badges are part of it).
    trace.findingsSettled = false;
    renderTrace();
    await loadTraceFindings(trace, signal);
  }

  // Live updates: the server says `changed` when traces arrive (and once on connecting).
  function startStream() {
    if (state.isStatic || typeof EventSource === 'undefined') return;
    const source = new EventSource('/api/stream');
    source.addEventListener('changed', () => {
      if (state.page === 'list') searcher.soon();
      else state.list.stale = true;
      // The event does not say which trace: the shown one may have grown.
      if (state.page === 'trace' && state.trace) traceLoader.soon();
    });
    source.addEventListener('open', () => setLive(true));
    source.addEventListener('error', () => setLive(false));
  }

  function setLive(on) {
    if (!ui.live) return;
    ui.live.textContent = on ? '● live' : '○ disconnected';
    ui.live.classList.toggle('on', on);
    ui.live.title = on ? 'updates as spans arrive' : 'the receiver is not reachable; retrying';
  }

  // ======================================================================== router

  function safeDecode(text) {
    try {
      return decodeURIComponent(text);
    } catch (error) {
      return text;
    }
  }

  // #/  #/?q=<TraceQL>  #/trace/<traceID>  #/trace/<traceID>/<spanID>
  // #/metrics  #/logs  #/contract
  function parseHash() {
    const raw = location.hash.replace(/^#/, '');
    const mark = raw.indexOf('?');
    const path = mark >= 0 ? raw.slice(0, mark) : raw;
    const search = mark >= 0 ? raw.slice(mark + 1) : '';
    const parts = path.split('/').filter((part) => part !== '').map(safeDecode);
    if (parts[0] === 'trace' && parts[1]) {
      return { page: 'trace', traceId: parts[1], spanId: parts[2] || null };
    }
    if (parts.length === 1 && SIGNAL_PAGES.includes(parts[0])) return { page: parts[0] };
    let query = '';
    for (const pair of search.split('&')) {
      // Decoded by hand: URLSearchParams would turn '+' into a space.
      if (pair.startsWith('q=')) query = safeDecode(pair.slice(2));
    }
    return { page: 'list', query };
  }

  function listHash(query) {
    return query ? '#/?q=' + encodeURIComponent(query) : '#/';
  }

  function traceHash(traceId, spanId) {
    return '#/trace/' + encodeURIComponent(traceId) + (spanId ? '/' + encodeURIComponent(spanId) : '');
  }

  // Selecting a span rewrites the hash without a history entry (Back returns to the list).
  function replaceHash(hash) {
    if (location.hash === hash) return;
    try {
      history.replaceState(null, '', hash);
    } catch (error) {
      location.replace(hash); // e.g. some file:// pages
    }
  }

  function route() {
    const target = parseHash();
    updateNav(target.page);
    if (target.page === 'trace') showTrace(target.traceId, target.spanId);
    else if (target.page === 'metrics') showMetrics();
    else if (target.page === 'logs') showLogs();
    else if (target.page === 'contract') showContract();
    else showList(target.query);
  }

  // ======================================================================== shell

  function buildShell() {
    const root = document.getElementById('app') || document.body;
    clear(root);

    ui.live = el('span', { class: 'live', text: '○ connecting…' });
    const topbar = el('header', { class: 'topbar' }, [
      el('h1', { text: TITLE }),
      buildNav(),
      state.isStatic ? el('span', { class: 'live static', text: 'static export' }) : ui.live,
    ]);

    // --- list view
    ui.traceCount = el('span', { id: 'trace-count', text: '0 traces' });
    ui.listTotal = el('span', { class: 'muted list-total' });

    ui.filterService = el('select', { id: 'filter-service', title: 'only traces with spans of this service' }, [
      el('option', { value: '', text: 'all services' }),
    ]);
    ui.filterName = el('input', {
      id: 'filter-name', type: 'text', placeholder: 'root name contains…', autocomplete: 'off', spellcheck: 'false',
    });
    ui.filterErrors = el('input', { id: 'filter-errors', type: 'checkbox' });
    ui.filterMinMs = el('input', {
      id: 'filter-min-ms', type: 'number', min: '0', step: 'any', placeholder: 'min ms',
      title: 'only traces lasting at least this many milliseconds',
    });
    const filters = el('div', { class: 'filters' }, [
      ui.filterService,
      ui.filterName,
      el('label', { class: 'check' }, [ui.filterErrors, ' errors only']),
      el('label', { class: 'check' }, ['≥ ', ui.filterMinMs, ' ms']),
    ]);

    ui.query = el('input', {
      id: 'query', type: 'text', placeholder: '{ } TraceQL, e.g. { name = "send_request" && status = error }',
      autocomplete: 'off', spellcheck: 'false', 'aria-label': 'TraceQL query',
    });
    ui.queryRun = el('button', { id: 'query-run', type: 'button', class: 'primary', text: 'Search' });
    ui.queryBox = el('div', { class: 'query-box' }, [ui.query, ui.queryRun]);
    const staticNote = el('span', { class: 'static-note' }, [
      'static export: TraceQL search needs ', el('code', { text: 'serve' }),
    ]);
    if (state.isStatic) ui.queryBox.hidden = true;
    else staticNote.hidden = true;

    ui.queryError = el('pre', { id: 'query-error', role: 'alert' });
    ui.queryError.hidden = true;
    ui.listStatus = el('div', { class: 'status-line' });
    ui.listStatus.hidden = true;

    const toolbar = el('div', { class: 'toolbar' }, [
      el('div', { class: 'count' }, [ui.traceCount, ui.listTotal]),
      filters,
      ui.queryBox,
      staticNote,
    ]);

    const head = el('div', { class: 'list-head', role: 'row' }, [
      el('div', { text: 'start' }),
      el('div', { text: 'root' }),
      el('div', { text: 'nodes' }),
      el('div', { class: 'num', text: 'spans' }),
      el('div', { class: 'num', text: 'errors' }),
      el('div', { class: 'num', text: 'duration' }),
    ]);
    ui.listSpacer = el('div', { class: 'list-spacer' });
    ui.listEmpty = el('div', { class: 'empty' });
    ui.listEmpty.hidden = true;
    ui.listScroll = el('div', { class: 'list-scroll', role: 'table' }, [head, ui.listSpacer, ui.listEmpty]);

    ui.listView = el('section', { id: 'list-view', class: 'view' }, [
      toolbar, ui.queryError, ui.listStatus, ui.listScroll,
    ]);
    ui.listView.hidden = true;

    root.appendChild(topbar);
    root.appendChild(ui.listView);
    ui.root = root;

    listRows = new VirtualRows(ui.listScroll, ui.listSpacer, LIST_ROW_H, buildTraceRow);
    wireListEvents();

    // The pages beside traces: built once, hidden until their hash is shown.
    root.appendChild(buildMetricsView());
    root.appendChild(buildLogsView());
    root.appendChild(buildContractView());
  }

  // Links to the pages; the contract's link waits until /api/contract says there is one.
  function buildNav() {
    const link = (id, href, text) => el('a', { id, class: 'nav-link', href, text });
    ui.nav = {
      list: link('nav-traces', '#/', 'traces'),
      metrics: link('nav-metrics', '#/metrics', 'metrics'),
      logs: link('nav-logs', '#/logs', 'logs'),
      contract: link('nav-contract', '#/contract', 'contract'),
    };
    ui.nav.contract.hidden = true;
    return el('nav', { class: 'nav', 'aria-label': 'pages' }, [
      ui.nav.list, ui.nav.metrics, ui.nav.logs, ui.nav.contract,
    ]);
  }

  // Marks the current page's link; a trace belongs to the traces page.
  function updateNav(page) {
    const current = page === 'trace' ? 'list' : page;
    for (const name of Object.keys(ui.nav)) {
      const active = name === current;
      ui.nav[name].classList.toggle('active', active);
      if (active) ui.nav[name].setAttribute('aria-current', 'page');
      else ui.nav[name].removeAttribute('aria-current');
    }
  }

  // ======================================================================== list view

  function wireListEvents() {
    ui.queryRun.addEventListener('click', submitQuery);
    ui.query.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        submitQuery();
      }
    });

    const onFilter = () => {
      state.filters.service = ui.filterService.value;
      state.filters.name = ui.filterName.value;
      state.filters.errorsOnly = ui.filterErrors.checked;
      const min = ui.filterMinMs.value.trim();
      state.filters.minMs = min === '' ? NaN : Number(min);
      applyFilters();
    };
    ui.filterService.addEventListener('change', onFilter);
    ui.filterName.addEventListener('input', onFilter);
    ui.filterErrors.addEventListener('change', onFilter);
    ui.filterMinMs.addEventListener('input', onFilter);

    // One listener for all rows (rows come and go while scrolling).
    ui.listSpacer.addEventListener('click', (event) => {
      const row = event.target.closest('.trace-row');
      if (row) openTrace(row.dataset.traceId);
    });
    ui.listSpacer.addEventListener('keydown', (event) => {
      const row = event.target.closest('.trace-row');
      if (!row) return;
      if (event.key === 'Enter') {
        event.preventDefault();
        openTrace(row.dataset.traceId);
      } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        const index = Number(row.dataset.index) + (event.key === 'ArrowDown' ? 1 : -1);
        if (index < 0 || index >= state.list.filtered.length) return;
        listRows.scrollToIndex(index, false);
        const next = listRows.rows.get(index);
        if (next) next.focus();
      }
    });
  }

  function submitQuery() {
    if (state.isStatic) return;
    const query = ui.query.value;
    state.query = query;
    state.list.awaiting = true;
    clearReady();
    searcher.now();
    // The hashchange that follows sees the same query and does not search again.
    const hash = listHash(query);
    if (location.hash !== hash) location.hash = hash;
  }

  function openTrace(traceId) {
    if (traceId) location.hash = traceHash(traceId);
  }

  function showQueryError(text) {
    if (text == null) {
      ui.queryError.hidden = true;
      ui.queryError.textContent = '';
    } else {
      ui.queryError.textContent = text;
      ui.queryError.hidden = false;
    }
  }

  function showListStatus(text) {
    ui.listStatus.textContent = text || '';
    ui.listStatus.hidden = !text;
  }

  function showList(query) {
    const fromOtherPage = state.page !== 'list';
    hideSignalPages();
    state.page = 'list';
    document.title = TITLE;
    traceLoader.cancel();
    removeTraceView();
    ui.listView.hidden = false;
    if (state.isStatic) {
      if (!state.list.loaded) applySearch(state.staticData.search);
      else if (fromOtherPage) renderList();
      return;
    }
    if (query !== state.query || !state.list.loaded || state.list.stale) {
      if (query !== state.query || !state.list.loaded) {
        state.list.awaiting = true;
        clearReady();
      }
      state.query = query;
      ui.query.value = query;
      if (fromOtherPage) renderList();
      searcher.now();
    } else if (fromOtherPage) {
      clearReady();
      renderList();
    }
  }

  function updateServiceOptions() {
    const services = new Set();
    for (const trace of state.list.traces) {
      if (Array.isArray(trace.services)) {
        for (const service of trace.services) services.add(String(service));
      } else if (trace.rootServiceName) services.add(String(trace.rootServiceName));
    }
    const selected = state.filters.service;
    // Keep the chosen service listed even when the new answer lacks it (the filter stays on).
    if (selected) services.add(selected);
    const sorted = Array.from(services).sort();
    const key = sorted.join('\u0000');
    if (key === state.list.serviceKey) return; // do not disturb an open dropdown
    state.list.serviceKey = key;
    const select = ui.filterService;
    clear(select);
    select.appendChild(el('option', { value: '', text: 'all services' }));
    for (const service of sorted) select.appendChild(el('option', { value: service, text: service }));
    select.value = selected;
  }

  function applyFilters() {
    const filters = state.filters;
    const name = filters.name.trim().toLowerCase();
    state.list.filtered = state.list.traces.filter((trace) => {
      if (filters.service) {
        const services = Array.isArray(trace.services) ? trace.services : [];
        if (!services.includes(filters.service) && trace.rootServiceName !== filters.service) return false;
      }
      if (name && !String(trace.rootTraceName == null ? '' : trace.rootTraceName).toLowerCase().includes(name)) {
        return false;
      }
      if (filters.errorsOnly && !(Number(trace.errorCount) > 0)) return false;
      if (Number.isFinite(filters.minMs) && !(Number(trace.durationMs) >= filters.minMs)) return false;
      return true;
    });
    renderList();
  }

  // `finished`: a search ended in an error; the page is as complete as it gets, so it is
  // "ready" even with no list yet.
  function renderList(finished) {
    const shown = state.list.filtered.length;
    const total = state.list.traces.length;
    ui.traceCount.textContent = shown + ' traces';
    ui.listTotal.textContent = shown !== total ? 'of ' + total + ' found' : '';
    if (!state.list.loaded) {
      ui.listEmpty.textContent = state.list.awaiting ? 'loading…' : 'No list yet.';
      ui.listEmpty.hidden = false;
    } else if (total === 0) {
      ui.listEmpty.textContent = state.isStatic
        ? 'No traces in this export.'
        : state.query.trim() && state.query.trim() !== '{ }'
          ? 'No trace matches the query.'
          : 'No traces yet: waiting for spans…';
      ui.listEmpty.hidden = false;
    } else if (shown === 0) {
      ui.listEmpty.textContent = 'No trace matches the filters.';
      ui.listEmpty.hidden = false;
    } else {
      ui.listEmpty.hidden = true;
    }
    if (state.page !== 'list') return; // rendered when shown (the rows need a layout)
    listRows.setCount(shown);
    if ((state.list.loaded || finished) && !state.list.awaiting) setReady('list');
  }

  function buildTraceRow(index) {
    const trace = state.list.filtered[index];
    const id = String(trace.traceID == null ? '' : trace.traceID);
    const start = parseNanos(trace.startTimeUnixNano);
    const nodes = Array.isArray(trace.nodes) ? trace.nodes.map(String) : [];
    const errors = Number(trace.errorCount) || 0;
    const row = el('div', { class: 'trace-row', role: 'row', tabindex: '0' });
    row.dataset.traceId = id;
    row.dataset.index = String(index);

    const service = trace.rootServiceName == null ? '' : String(trace.rootServiceName);
    const name = trace.rootTraceName == null ? '' : String(trace.rootTraceName);
    // "<root span not yet received>" comes as both service and name: say it once.
    const rootText = service && service !== name ? service + ': ' + name : name;

    const nodeCell = el('div', { class: 'nodes' }, [el('span', { class: 'node-count', text: String(nodes.length) })]);
    if (nodes.length > 0) {
      nodeCell.appendChild(el('span', { class: 'node-first', title: nodes[0], text: short8(nodes[0]) }));
    }
    if (nodes.length > 1) nodeCell.title = nodes.join('\n');

    row.appendChild(el('div', { class: 'start', title: fmtDateTime(start), text: fmtClock(start) }));
    row.appendChild(el('div', { class: 'root', title: rootText + '\ntrace ' + id, text: rootText }));
    row.appendChild(nodeCell);
    row.appendChild(el('div', { class: 'num spans', text: String(trace.spanCount == null ? '–' : trace.spanCount) }));
    row.appendChild(el('div', { class: 'num errors' + (errors > 0 ? ' has-errors' : ''), text: String(errors) }));
    row.appendChild(el('div', { class: 'num duration', text: listDuration(trace) }));
    return row;
  }

  // The search answer has whole milliseconds (durationMs); a trace-level durationNanos, if
  // the server ever sends one, is more precise.
  function listDuration(trace) {
    const nanos = parseNanos(trace.durationNanos);
    if (nanos != null) return fmtDur(Number(nanos));
    const ms = Number(trace.durationMs);
    if (!Number.isFinite(ms)) return '–';
    if (ms === 0) return '<1ms';
    return fmtDur(ms * 1e6);
  }

  // ======================================================================== trace model

  // The OTLP/JSON trace as rows in tree order, with offsets (Number ns from the trace start).
  function buildModel(json, routeId) {
    const spans = [];
    const resourceSpans = list(json && (json.resourceSpans || json.batches));
    for (const resourceSpan of resourceSpans) {
      const resource = resourceSpan.resource && typeof resourceSpan.resource === 'object' ? resourceSpan.resource : {};
      const resourceAttributes = list(resource.attributes);
      const service = attrString(resourceAttributes, 'service.name');
      const node = attrString(resourceAttributes, 'service.instance.id') || service || '(unknown node)';
      for (const scopeSpan of list(resourceSpan.scopeSpans || resourceSpan.instrumentationLibrarySpans)) {
        const scope = scopeSpan.scope || scopeSpan.instrumentationLibrary || {};
        for (const raw of list(scopeSpan.spans)) {
          const status = raw.status && typeof raw.status === 'object' ? raw.status : {};
          spans.push({
            id: normId(raw.spanId),
            parentId: normId(raw.parentSpanId),
            traceId: normId(raw.traceId),
            name: raw.name == null ? '' : String(raw.name),
            kind: kindNumber(raw.kind),
            flags: Number(raw.flags) || 0,
            start: parseNanos(raw.startTimeUnixNano),
            end: parseNanos(raw.endTimeUnixNano),
            statusCode: statusNumber(status.code),
            statusMessage: status.message == null ? '' : String(status.message),
            attributes: list(raw.attributes),
            events: list(raw.events),
            links: list(raw.links),
            node,
            service,
            resourceAttributes,
            scope,
          });
        }
      }
    }

    // Offsets from the earliest start, as Number nanoseconds (exact below ~104 days).
    let t0 = null;
    for (const span of spans) if (span.start != null && (t0 == null || span.start < t0)) t0 = span.start;
    if (t0 == null) t0 = 0n;
    let length = 0;
    for (const span of spans) {
      span.startNs = span.start != null ? Number(span.start - t0) : 0;
      span.open = false;
      span.badEnd = false;
      if (span.start == null || span.end == null) {
        span.open = true; // no end (yet): drawn to the window end
        span.durNs = null;
        span.endNs = span.startNs;
      } else if (span.end < span.start) {
        span.badEnd = true; // clock skew or a bad exporter: shown as 0 long
        span.durNs = 0;
        span.endNs = span.startNs;
      } else {
        span.durNs = Number(span.end - span.start);
        span.endNs = span.startNs + span.durNs;
      }
      if (span.endNs > length) length = span.endNs;
      span.remote = (span.flags & FLAG_REMOTE_PARENT) !== 0;
      span.isError = span.statusCode === 2;
    }

    // Tree: children by start; roots (and orphans, whose parent is not in the trace) by start.
    const byId = new Map();
    for (const span of spans) if (span.id && !byId.has(span.id)) byId.set(span.id, span);
    for (const span of spans) {
      span.children = [];
      span.parent = null;
      span.orphan = false;
      span.cycle = false;
      span.depth = 0;
      span.row = -1;
    }
    const roots = [];
    for (const span of spans) {
      const parent = span.parentId ? byId.get(span.parentId) : null;
      if (parent && parent !== span) {
        span.parent = parent;
        parent.children.push(span);
      } else {
        span.orphan = !!span.parentId;
        roots.push(span);
      }
    }
    const byStart = (a, b) => a.startNs - b.startNs || a.endNs - b.endNs;
    for (const span of spans) span.children.sort(byStart);
    roots.sort(byStart);

    // Iterative DFS: a 5,000-deep chain must not overflow the stack.
    const rows = [];
    const visit = (root) => {
      const stack = [[root, 0]];
      while (stack.length) {
        const [span, depth] = stack.pop();
        if (span.row >= 0) continue;
        span.depth = depth;
        span.row = rows.length;
        rows.push(span);
        for (let i = span.children.length - 1; i >= 0; i--) stack.push([span.children[i], depth + 1]);
      }
    };
    for (const root of roots) visit(root);
    // Spans in a parent cycle are reachable from no root: list them as extra roots.
    const unvisited = spans.filter((span) => span.row < 0).sort(byStart);
    for (const span of unvisited) {
      if (span.row >= 0) continue;
      span.cycle = true;
      visit(span);
    }

    // Node colours, in order of first appearance by start time.
    const nodeColours = new Map();
    const services = new Set();
    for (const span of rows.slice().sort(byStart)) {
      if (!nodeColours.has(span.node)) nodeColours.set(span.node, nodeColour(nodeColours.size, span.node));
      if (span.service) services.add(span.service);
    }

    const root = roots.find((span) => !span.orphan) || rows[0] || null;
    return {
      routeId,
      traceId: (spans.find((span) => span.traceId) || {}).traceId || routeId,
      spans,
      rows,
      byId,
      t0,
      length,
      nodeColours,
      services: Array.from(services),
      root,
      errorCount: spans.filter((span) => span.isError).length,
      orphanCount: spans.filter((span) => span.orphan).length,
    };
  }

  // ======================================================================== trace view

  function removeTraceView() {
    if (ui.traceView) ui.traceView.remove();
    ui.traceView = null;
    spanRows = null;
  }

  function showTrace(traceId, spanId) {
    const fromOtherPage = state.page !== 'trace';
    hideSignalPages();
    state.page = 'trace';
    ui.listView.hidden = true;
    if (!fromOtherPage && state.trace && state.trace.id === traceId && ui.traceView) {
      // The same trace, another span in the hash (typed, or Back/Forward).
      if (state.trace.model) {
        const span = spanId ? state.trace.model.byId.get(normId(spanId)) : null;
        selectRow(span ? span.row : -1, { scroll: 'centre', updateHash: false });
      } else {
        state.trace.pendingSpan = spanId;
      }
      return;
    }
    clearReady();
    removeTraceView();
    state.trace = {
      id: traceId,
      model: null,
      lastBody: null,
      selected: -1,
      selectedId: null,
      pendingSpan: spanId,
      zoomed: false,
      window: { start: 0, len: MIN_WINDOW_NS },
      findings: null,
      findingsSettled: false,
    };
    buildTraceView(traceId);
    traceLoader.now();
  }

  // The page skeleton for one trace; renderTrace() fills it (again on each live update).
  function buildTraceView(traceId) {
    ui.traceBack = el('a', { class: 'back', href: listHash(state.query), text: '← traces' });
    ui.traceInfo = el('div', { class: 'trace-info' }, [
      el('div', { class: 'trace-title-row' }, [
        el('h2', { class: 'trace-title', text: 'loading trace…' }),
        el('code', { class: 'trace-id', text: traceId }),
      ]),
    ]);
    ui.traceStatus = el('div', { class: 'status-line' });
    ui.traceStatus.hidden = true;

    ui.axis = el('div', { class: 'axis' });
    ui.wfHeadLabel = el('div', { class: 'wf-head-label', text: 'span' });
    const head = el('div', { class: 'wf-head' }, [ui.wfHeadLabel, ui.axis]);
    ui.wfGrid = el('div', { class: 'wf-grid' });
    ui.wfSpacer = el('div', { class: 'wf-spacer' }, [ui.wfGrid]);
    ui.wfScroll = el('div', { class: 'waterfall-scroll', tabindex: '0', 'aria-label': 'spans' }, [head, ui.wfSpacer]);
    ui.details = el('aside', { id: 'span-details' });
    ui.traceBody = el('div', { class: 'trace-body' }, [
      el('div', { class: 'waterfall' }, [ui.wfScroll]),
      ui.details,
    ]);
    ui.traceBody.hidden = true;

    ui.traceView = el('section', { id: 'trace-view', class: 'view' }, [
      el('header', { class: 'trace-header' }, [ui.traceBack, ui.traceInfo]),
      ui.traceStatus,
      ui.traceBody,
    ]);
    ui.root.appendChild(ui.traceView);

    spanRows = new VirtualRows(ui.wfScroll, ui.wfSpacer, SPAN_ROW_H, buildSpanRow);
    wireTraceEvents();
  }

  function wireTraceEvents() {
    ui.wfSpacer.addEventListener('click', (event) => {
      const marker = event.target.closest('.remote-parent');
      if (marker && marker.dataset.parentRow) {
        selectRow(Number(marker.dataset.parentRow), { scroll: 'nearest' });
        return;
      }
      const row = event.target.closest('.span-row');
      if (row) selectRow(Number(row.dataset.row), {});
    });
  }

  function showTraceError(message) {
    const trace = state.trace;
    if (trace.model) {
      // Keep what was shown; say what went wrong on refresh.
      ui.traceStatus.textContent = message;
      ui.traceStatus.hidden = false;
    } else {
      const title = ui.traceInfo.querySelector('.trace-title');
      if (title) title.textContent = 'trace not available';
      ui.traceStatus.textContent = message;
      ui.traceStatus.hidden = false;
      ui.traceBody.hidden = true;
    }
    setReady('trace');
  }

  function renderTrace() {
    const trace = state.trace;
    const model = trace.model;
    ui.traceStatus.hidden = true;
    renderTraceHeader(model);
    document.title = (model.root ? model.root.name : trace.id) + ' — p2p-otel-testkit';
    if (model.rows.length === 0) {
      ui.traceStatus.textContent = 'This trace has no spans.';
      ui.traceStatus.hidden = false;
      ui.traceBody.hidden = true;
      markTraceReady();
      return;
    }
    ui.traceBody.hidden = false;
    if (!trace.zoomed) trace.window = { start: 0, len: Math.max(model.length, MIN_WINDOW_NS) };

    // Selection survives a refresh by span id; a span in the hash wins on first render.
    let selected = -1;
    let centre = false;
    if (trace.pendingSpan != null) {
      const span = model.byId.get(normId(trace.pendingSpan));
      if (span) {
        selected = span.row;
        centre = true;
      }
      trace.pendingSpan = null;
    } else if (trace.selectedId != null && trace.selected >= 0) {
      const previous = model.byId.get(trace.selectedId);
      if (previous) selected = previous.row;
    }
    trace.selected = selected;
    trace.selectedId = selected >= 0 ? model.rows[selected].id : null;

    ui.wfHeadLabel.textContent = plural(model.rows.length, 'span');
    renderAxis();
    spanRows.setCount(model.rows.length);
    if (centre) spanRows.scrollToIndex(selected, true);
    renderDetails();
    markTraceReady();
  }

  function renderTraceHeader(model) {
    const info = ui.traceInfo;
    clear(info);
    const root = model.root;
    const titleRow = el('div', { class: 'trace-title-row' }, [
      el('h2', { class: 'trace-title', title: root ? root.name : '', text: root ? root.name || '(no name)' : '(no spans)' }),
      root && root.service ? el('span', { class: 'muted', text: root.service }) : null,
      el('code', { class: 'trace-id', title: 'trace id', text: model.traceId }),
    ]);
    info.appendChild(titleRow);

    ui.zoomLabel = el('span', { class: 'zoom-label muted' });
    const zoomReset = el('button', { id: 'zoom-reset', type: 'button', text: 'reset zoom', title: 'show the whole trace' });
    zoomReset.addEventListener('click', resetZoom);
    const meta = el('div', { class: 'trace-meta' }, [
      metaItem('duration', fmtDur(model.length)),
      metaItem('spans', String(model.spans.length)),
      model.errorCount > 0 ? metaItem('errors', String(model.errorCount), 'has-errors') : null,
      model.orphanCount > 0 ? metaItem('parent missing', String(model.orphanCount)) : null,
      metaItem('start', fmtDateTime(model.spans.length ? model.t0 : null)),
      ui.zoomLabel,
      zoomReset,
    ]);
    info.appendChild(meta);

    const legend = el('div', { class: 'legend' }, [el('span', { class: 'muted', text: 'nodes' })]);
    for (const [node, colour] of model.nodeColours) {
      const swatch = el('span', { class: 'swatch', text: '■' });
      swatch.style.color = colour;
      legend.appendChild(el('span', { class: 'legend-item', title: node }, [swatch, ' ' + shortNode(node)]));
    }
    const nodeNames = Array.from(model.nodeColours.keys());
    const sameAsNodes = model.services.length === nodeNames.length &&
      model.services.every((service) => model.nodeColours.has(service));
    if (!sameAsNodes && model.services.length > 0) {
      legend.appendChild(el('span', { class: 'muted legend-services', text: 'services' }));
      for (const service of model.services.slice().sort()) {
        legend.appendChild(el('span', { class: 'legend-item service' }, [service]));
      }
    }
    info.appendChild(legend);
  }

  function metaItem(label, value, extraClass) {
    return el('span', { class: 'meta-item' + (extraClass ? ' ' + extraClass : '') }, [
      el('span', { class: 'muted', text: label + ' ' }),
      el('span', { class: 'meta-value', text: value }),
    ]);
  }

  // A "nice" tick step (1, 2 or 5 × 10^k ns) giving about 7 ticks over `length`.
  function tickStep(length) {
    let best = 1;
    let bestScore = Infinity;
    const top = Math.floor(Math.log10(length));
    for (let power = top - 2; power <= top; power++) {
      for (const factor of [1, 2, 5]) {
        const step = factor * Math.pow(10, power);
        if (step < 1) continue;
        const score = Math.abs(Math.log(length / step / 7));
        if (score < bestScore) {
          bestScore = score;
          best = step;
        }
      }
    }
    return best;
  }

  function renderAxis() {
    const trace = state.trace;
    const win = trace.window;
    const end = win.start + win.len;
    const step = tickStep(win.len);
    clear(ui.axis);
    clear(ui.wfGrid);
    const first = Math.ceil(win.start / step);
    for (let i = first; i * step <= end + 1e-6; i++) {
      const at = i * step; // relative to the trace start, zoomed or not
      const position = (at - win.start) / win.len;
      const tick = el('div', { class: 'tick' + (position > 0.92 ? ' tick-end' : ''), text: fmtDur(at) });
      tick.style.left = pct(position);
      ui.axis.appendChild(tick);
      const line = el('div', { class: 'grid-line' });
      line.style.left = pct(position);
      ui.wfGrid.appendChild(line);
    }
    if (trace.zoomed) {
      ui.zoomLabel.textContent = 'window ' + fmtDur(win.start) + ' – ' + fmtDur(end);
    } else {
      ui.zoomLabel.textContent = '';
    }
  }

  function buildSpanRow(index) {
    const trace = state.trace;
    const model = trace.model;
    const span = model.rows[index];
    const colour = model.nodeColours.get(span.node);
    const row = el('div', {
      class: 'span-row' + (index === trace.selected ? ' selected' : '') + (span.isError ? ' is-error' : ''),
      title: span.name + ' · ' + (span.open ? 'open' : fmtDur(span.durNs)) + ' · ' + span.node,
    });
    row.dataset.spanId = span.id;
    row.dataset.row = String(index);

    // Left column: indentation, node dot, name, badges.
    const label = el('div', { class: 'span-label' });
    label.style.paddingLeft = 6 + Math.min(span.depth, MAX_INDENT_DEPTH) * 12 + 'px';
    const dot = el('span', { class: 'node-dot' });
    dot.style.backgroundColor = colour;
    label.appendChild(dot);
    if (span.depth > MAX_INDENT_DEPTH) label.appendChild(el('span', { class: 'badge', text: 'depth ' + span.depth }));
    label.appendChild(el('span', { class: 'span-name' + (span.name ? '' : ' unnamed'), text: span.name || '(no name)' }));
    const findings = spanFindings(trace, span);
    if (findings.length > 0) label.appendChild(findingBadge(findings));
    if (span.kind !== 1 && span.kind !== 0) label.appendChild(el('span', { class: 'badge kind', text: kindName(span.kind) }));
    if (span.isError) label.appendChild(el('span', { class: 'badge error', text: 'error' }));
    if (span.remote) {
      const parent = span.parent;
      const crossNode = parent && parent.node !== span.node;
      const marker = el('span', {
        class: 'remote-parent' + (parent ? ' linked' : ''),
        title: parent ? 'parent: ' + (parent.name || parent.id) + ' on ' + parent.node : 'the parent span is remote',
        text: crossNode ? '⇠ from ' + shortNode(parent.node) : '⇠ remote parent',
      });
      if (parent) marker.dataset.parentRow = String(parent.row);
      label.appendChild(marker);
    }
    if (span.orphan) label.appendChild(el('span', { class: 'badge orphan', title: 'parent ' + span.parentId + ' is not in this trace', text: 'parent missing' }));
    if (span.cycle) label.appendChild(el('span', { class: 'badge orphan', text: 'parent cycle' }));
    if (span.badEnd) label.appendChild(el('span', { class: 'badge orphan', text: 'end < start' }));
    row.appendChild(label);

    // Right column: the bar, clipped to the window.
    const track = el('div', { class: 'span-track' });
    const bar = el('div', { class: 'bar' });
    bar.style.backgroundColor = colour;
    const win = trace.window;
    const windowEnd = win.start + win.len;
    const start = span.startNs;
    const end = span.open ? Math.max(windowEnd, start) : span.endNs;
    if (end < win.start || start > windowEnd) {
      bar.hidden = true;
    } else {
      const left = Math.max(start, win.start);
      const right = Math.min(end, windowEnd);
      bar.style.left = pct((left - win.start) / win.len);
      bar.style.width = pct((right - left) / win.len); // CSS min-width keeps it visible
      if (span.open) bar.classList.add('bar-open');
      if (span.isError) bar.classList.add('bar-error');
      if (span.remote) bar.classList.add('bar-remote');
      if (start < win.start) bar.classList.add('clip-left');
      if (end > windowEnd) bar.classList.add('clip-right');
      const text = el('span', { class: 'bar-label', text: span.open ? 'open' : fmtDur(span.durNs) });
      const rightFraction = (right - win.start) / win.len;
      const leftFraction = (left - win.start) / win.len;
      if (rightFraction < 0.8) {
        text.style.left = pct(rightFraction);
      } else if (leftFraction > 0.2) {
        text.style.right = pct(1 - leftFraction);
        text.classList.add('before');
      } else {
        // A bar spanning most of the window: the label inside its right end.
        text.style.right = pct(1 - rightFraction);
        text.classList.add('inside');
      }
      track.appendChild(text);
    }
    track.appendChild(bar);
    row.appendChild(track);
    return row;
  }

  function selectRow(index, options) {
    const trace = state.trace;
    if (!trace || !trace.model) return;
    const model = trace.model;
    if (index >= model.rows.length) index = -1;
    trace.selected = index;
    trace.selectedId = index >= 0 ? model.rows[index].id : null;
    if (spanRows) {
      for (const [rowIndex, row] of spanRows.rows) row.classList.toggle('selected', rowIndex === index);
      if (index >= 0 && options.scroll) spanRows.scrollToIndex(index, options.scroll === 'centre');
    }
    renderDetails();
    if (options.updateHash !== false) replaceHash(traceHash(trace.id, index >= 0 ? model.rows[index].id : null));
  }

  function zoomToSpan(span) {
    const trace = state.trace;
    const model = trace.model;
    const start = span.startNs;
    const end = span.open ? Math.max(model.length, start) : span.endNs;
    const duration = end - start;
    const length = Math.max(duration * 1.1, MIN_WINDOW_NS); // 5% margin each side
    trace.window = { start: Math.max(0, start + duration / 2 - length / 2), len: length };
    trace.zoomed = true;
    renderAxis();
    spanRows.reset();
  }

  function resetZoom() {
    const trace = state.trace;
    if (!trace || !trace.model) return;
    trace.zoomed = false;
    trace.window = { start: 0, len: Math.max(trace.model.length, MIN_WINDOW_NS) };
    renderAxis();
    spanRows.reset();
  }

  // --- details panel

  function renderDetails() {
    const box = ui.details;
    const trace = state.trace;
    const model = trace.model;
    // Keep the panel's scroll on a live refresh of the same span; a new span starts at the top.
    const scrollTop = ui.detailsSpanId === trace.selectedId ? box.scrollTop : 0;
    ui.detailsSpanId = trace.selectedId;
    clear(box);
    if (trace.selected < 0) {
      box.appendChild(el('p', { class: 'muted hint', text: 'Select a span to see its details (↑/↓ move the selection).' }));
      return;
    }
    const span = model.rows[trace.selected];
    const colour = model.nodeColours.get(span.node);

    box.appendChild(el('h3', { class: 'details-name', text: span.name || '(no name)' }));
    const zoom = el('button', { id: 'zoom-span', type: 'button', text: 'zoom to span' });
    zoom.addEventListener('click', () => zoomToSpan(span));
    box.appendChild(el('div', { class: 'details-actions' }, [zoom]));

    const rows = [];
    rows.push(['span id', el('code', { text: span.id || '(none)' })]);
    rows.push(['parent', parentCell(span, model)]);
    rows.push(['kind', kindName(span.kind)]);
    const status = statusName(span.statusCode) + (span.statusMessage ? ': ' + span.statusMessage : '');
    rows.push(['status', el('span', { class: span.isError ? 'has-errors' : '', text: status })]);
    const swatch = el('span', { class: 'swatch', text: '■' });
    swatch.style.color = colour;
    rows.push(['node', el('span', {}, [swatch, ' ' + span.node])]);
    if (span.service && span.service !== span.node) rows.push(['service', span.service]);
    rows.push(['start', '+' + fmtDur(span.startNs) + '  (' + fmtDateTime(span.start) + ')']);
    rows.push(['duration', span.open ? 'open (no end yet)' : span.badEnd ? '0 (end before start)' : fmtDur(span.durNs)]);
    if (span.flags) rows.push(['flags', '0x' + span.flags.toString(16)]);
    box.appendChild(keyValueTable(rows));

    // With a contract: what it found on this span, above the raw attributes.
    if (trace.findings) box.appendChild(findingsSection(spanFindings(trace, span)));

    box.appendChild(section('attributes', attributeTable(span.attributes)));
    box.appendChild(section('events (' + span.events.length + ')', eventList(span)));
    box.appendChild(section('links (' + span.links.length + ')', linkList(span, model)));
    box.appendChild(section('resource', attributeTable(span.resourceAttributes)));
    const scope = span.scope || {};
    const scopeRows = [
      ['name', scope.name ? String(scope.name) : '(none)'],
      ['version', scope.version ? String(scope.version) : '(none)'],
    ];
    box.appendChild(section('scope', el('div', {}, [keyValueTable(scopeRows), attributeTable(scope.attributes, true)])));
    box.scrollTop = scrollTop;
  }

  function parentCell(span, model) {
    if (!span.parentId) return el('span', { class: 'muted', text: '(none: a root span)' });
    const cell = el('span');
    if (span.parent) {
      const link = el('button', { type: 'button', class: 'linklike', title: 'select the parent', text: span.parentId });
      const parentRow = span.parent.row;
      link.addEventListener('click', () => selectRow(parentRow, { scroll: 'centre' }));
      cell.appendChild(link);
      cell.appendChild(el('span', { class: 'muted', text: ' ' + (span.parent.name || '') }));
    } else {
      cell.appendChild(el('code', { text: span.parentId }));
      cell.appendChild(el('span', { class: 'muted', text: ' (not in this trace)' }));
    }
    if (span.remote) cell.appendChild(el('span', { class: 'badge remote', text: 'remote' }));
    return cell;
  }

  function section(title, content) {
    return el('section', { class: 'details-section' }, [el('h4', { text: title }), content]);
  }

  function keyValueTable(rows) {
    const table = el('table', { class: 'kv' });
    const body = el('tbody');
    for (const [key, value] of rows) {
      body.appendChild(el('tr', {}, [
        el('th', { text: key }),
        el('td', {}, [typeof value === 'string' ? document.createTextNode(value) : value]),
      ]));
    }
    table.appendChild(body);
    return table;
  }

  function attributeTable(attributes, quietWhenEmpty) {
    const sorted = sortedAttributes(attributes);
    if (sorted.length === 0) return el('p', { class: 'muted none', text: quietWhenEmpty ? '' : '(none)' });
    return keyValueTable(sorted.map((kv) => [String(kv.key), el('span', { class: 'value', text: anyToText(kv.value) })]));
  }

  // Compact "key=value, …" for event and link attributes.
  function inlineAttributes(attributes) {
    return sortedAttributes(attributes).map((kv) => String(kv.key) + '=' + anyToText(kv.value, true)).join(', ');
  }

  function eventList(span) {
    if (span.events.length === 0) return el('p', { class: 'muted none', text: '(none)' });
    const events = span.events
      .map((event) => ({ event, time: parseNanos(event.timeUnixNano) }))
      .sort((a, b) => (a.time == null || b.time == null ? 0 : a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    const box = el('ol', { class: 'events' });
    for (const { event, time } of events) {
      const offset = time != null && span.start != null ? '+' + fmtDur(Number(time - span.start)) : '?';
      const item = el('li', {}, [
        el('span', { class: 'event-offset', text: offset.replace('+-', '-') }),
        ' ',
        el('span', { class: 'event-name', text: event.name == null ? '' : String(event.name) }),
      ]);
      const attributes = inlineAttributes(event.attributes);
      if (attributes) item.appendChild(el('div', { class: 'event-attributes', text: attributes }));
      box.appendChild(item);
    }
    return box;
  }

  function linkList(span, model) {
    if (span.links.length === 0) return el('p', { class: 'muted none', text: '(none)' });
    const box = el('ul', { class: 'links' });
    for (const link of span.links) {
      const traceId = normId(link.traceId);
      const spanId = normId(link.spanId);
      const item = el('li');
      const sameTrace = traceId && sameTraceId(traceId, model.traceId);
      const target = sameTrace ? model.byId.get(spanId) : null;
      if (target) {
        const button = el('button', { type: 'button', class: 'linklike', text: 'span ' + spanId });
        button.addEventListener('click', () => selectRow(target.row, { scroll: 'centre' }));
        item.appendChild(button);
        item.appendChild(el('span', { class: 'muted', text: ' ' + (target.name || '') + ' (this trace)' }));
      } else if (traceId && !sameTrace) {
        item.appendChild(el('a', { href: traceHash(traceId, spanId), text: 'trace ' + traceId }));
        item.appendChild(el('span', { class: 'muted', text: ' span ' + (spanId || '?') }));
      } else {
        item.appendChild(el('span', { text: 'trace ' + (traceId || '?') + ' span ' + (spanId || '?') }));
        if (sameTrace) item.appendChild(el('span', { class: 'muted', text: ' (not in this trace)' }));
      }
      const attributes = inlineAttributes(link.attributes);
      if (attributes) item.appendChild(el('div', { class: 'event-attributes', text: attributes }));
      box.appendChild(item);
    }
    return box;
  }

  // --- keyboard: ↑/↓ move the selection in the waterfall

  function onKeyDown(event) {
    if (state.page !== 'trace' || !state.trace || !state.trace.model) return;
    if (event.key !== 'ArrowUp' && event.key !== 'ArrowDown') return;
    if (event.altKey || event.ctrlKey || event.metaKey || isTyping(event.target)) return;
    const count = state.trace.model.rows.length;
    if (count === 0) return;
    event.preventDefault();
    const current = state.trace.selected;
    let next;
    if (current < 0) next = event.key === 'ArrowDown' ? 0 : count - 1;
    else next = Math.max(0, Math.min(count - 1, current + (event.key === 'ArrowDown' ? 1 : -1)));
    if (next !== current) selectRow(next, { scroll: 'nearest' });
  }

  // ======================================================================== findings on the trace page

  // The contract's findings on the shown trace: a badge on each row they concern and a
  // section in the details. Static mode reads data.findings[traceID]; live mode asks
  // /api/findings/<id> unless /api/contract already said there is none (the answer would
  // say so too). Settling them, whatever the outcome, is what makes the page "ready".
  async function loadTraceFindings(trace, signal) {
    const current = () => state.page === 'trace' && state.trace === trace && !signal.aborted;
    let findings = null; // null: no contract, nothing to show
    let problem = null;
    if (state.isStatic) {
      findings = staticFindings(trace.id);
    } else if (state.contract.present !== false) {
      const got = await fetchJson('/api/findings/' + encodeURIComponent(trace.id), signal);
      if (!got || !current()) return;
      if (got.error) problem = 'contract findings not available: ' + got.error;
      else if (got.json && got.json.contract === true) {
        noteContract(true);
        findings = list(got.json.findings);
      } else if (got.json && got.json.contract === false) noteContract(false);
    }
    if (!current()) return;
    const hadFindings = trace.findings != null;
    trace.findings = findings == null ? null : findingsBySpan(findings);
    trace.findingsSettled = true;
    if (problem) {
      ui.traceStatus.textContent = problem;
      ui.traceStatus.hidden = false;
    }
    // Rows and details show the badges; without findings before or now, nothing changes.
    if ((hadFindings || trace.findings) && trace.model && trace.model.rows.length > 0) {
      spanRows.reset();
      renderDetails();
    }
    markTraceReady();
  }

  // "ready" once the waterfall and its findings are both in.
  function markTraceReady() {
    if (state.trace && state.trace.findingsSettled) setReady('trace');
  }

  // The export's findings for one trace: its array, [] when the export has findings but none
  // for this trace (it was checked), null when the export has none at all.
  function staticFindings(id) {
    const all = state.staticData && state.staticData.findings;
    if (!all || typeof all !== 'object') return null;
    if (Object.prototype.hasOwnProperty.call(all, id)) return list(all[id]);
    const key = Object.keys(all).find((candidate) => sameTraceId(candidate, id));
    return key == null ? [] : list(all[key]);
  }

  function findingsBySpan(findings) {
    const bySpan = new Map();
    for (const finding of findings) {
      const location = finding.span && typeof finding.span === 'object' ? finding.span : null;
      const spanId = location ? normId(location.span_id) : '';
      if (!spanId) continue;
      if (!bySpan.has(spanId)) bySpan.set(spanId, []);
      bySpan.get(spanId).push(finding);
    }
    for (const [spanId, found] of bySpan) bySpan.set(spanId, sortFindings(found));
    return bySpan;
  }

  function spanFindings(trace, span) {
    return (trace.findings && trace.findings.get(span.id)) || [];
  }

  // Red when any finding on the span is a violation, amber otherwise; the count as text.
  function findingBadge(findings) {
    const worst = levelName(findings[0].level); // sorted worst first
    const badge = el('span', {
      class: 'finding-badge ' + (worst === 'violation' ? 'violation' : 'advice'),
      title: findings.map((finding) => levelName(finding.level) + ' ' + String(finding.id || '') + ': ' +
        String(finding.message || '')).join('\n'),
      text: String(findings.length),
    });
    badge.dataset.level = worst;
    return badge;
  }

  function findingsSection(findings) {
    const content = findings.length === 0
      ? el('p', { class: 'muted none', text: '(none: this span follows the contract)' })
      : el('ul', { class: 'finding-list' }, findings.map((finding) => findingItem(finding, false)));
    const box = section('contract findings (' + findings.length + ')', content);
    box.id = 'span-findings';
    return box;
  }

  // ---- findings, shared by the trace and contract pages

  // A known level, or 'other' (the name also becomes a class).
  function levelName(level) {
    const name = String(level == null ? '' : level).toLowerCase();
    return LEVELS.includes(name) ? name : 'other';
  }

  function levelRank(level) {
    const index = LEVELS.indexOf(levelName(level));
    return index < 0 ? LEVELS.length : index;
  }

  // Worst first; the server's order within a level (Array.prototype.sort is stable).
  function sortFindings(findings) {
    return findings.slice().sort((a, b) => levelRank(a.level) - levelRank(b.level));
  }

  // One finding: level, id, what it is about, how often, the message, its context and,
  // on the contract page, a link to the span it was first found on.
  function findingItem(finding, withSpanLink) {
    const level = levelName(finding.level);
    const occurrences = Number(finding.occurrences);
    const about = [finding.signal_type, finding.signal_name].filter((part) => part != null && part !== '').join(' ');
    const item = el('li', { class: 'finding' }, [
      el('span', { class: 'badge level level-' + level, text: level === 'other' ? String(finding.level) : level }),
      ' ',
      el('code', { class: 'finding-id', text: String(finding.id == null ? '' : finding.id) }),
      about ? el('span', { class: 'finding-signal muted', text: ' ' + about }) : null,
      Number.isFinite(occurrences)
        ? el('span', { class: 'finding-occurrences', title: 'on this many samples', text: ' ×' + occurrences })
        : null,
      el('div', { class: 'finding-message', text: String(finding.message == null ? '' : finding.message) }),
    ]);
    item.dataset.level = level;
    const context = attributePairs(finding.context);
    if (context.length > 0) item.appendChild(el('div', { class: 'finding-context', text: context.join('  ') }));
    const location = finding.span && typeof finding.span === 'object' ? finding.span : null;
    if (withSpanLink && location && location.trace_id) {
      const traceId = String(location.trace_id);
      const spanId = location.span_id ? String(location.span_id) : '';
      item.appendChild(el('div', { class: 'finding-where' }, [
        el('a', {
          class: 'finding-span-link',
          href: traceHash(traceId, spanId),
          title: 'trace ' + traceId + (spanId ? '\nspan ' + spanId : ''),
          text: spanId ? 'span ' + spanId : 'trace ' + traceId,
        }),
        location.node ? el('span', { class: 'muted', title: String(location.node), text: ' on ' + shortNode(location.node) }) : null,
      ]));
    }
    return item;
  }

  // ======================================================================== pages beside traces

  // GET a JSON API: { body, json }, { error } (unreachable, not 2xx, not JSON), or null when
  // the request was aborted (a newer one replaced it, or the page was left).
  async function fetchJson(url, signal) {
    let answer;
    try {
      answer = await fetchText(url, signal);
    } catch (error) {
      return signal.aborted ? null : { error: 'cannot reach the receiver: ' + error.message };
    }
    if (signal.aborted) return null;
    if (!answer.ok) return { error: url + ' answered HTTP ' + answer.status + (answer.body ? ': ' + answer.body : '') };
    try {
      return { body: answer.body, json: JSON.parse(answer.body) };
    } catch (error) {
      return { error: 'the answer of ' + url + ' is not JSON: ' + error.message };
    }
  }

  // A key of the embedded data, or undefined (the export predates it, or has none).
  function staticPart(key) {
    const data = state.staticData;
    return data && Object.prototype.hasOwnProperty.call(data, key) ? data[key] : undefined;
  }

  function needsServe(what) {
    return el('p', { class: 'empty needs-serve' }, [
      'static export: ' + what + ' need ', el('code', { text: 'serve' }), ' (this file holds none)',
    ]);
  }

  function showStatus(node, text) {
    node.textContent = text || '';
    node.hidden = !text;
  }

  // Leaving a page beside traces: its view hides and its polling stops. The contract's
  // load is not cancelled: it also tells the other pages whether there is a contract.
  function hideSignalPages() {
    stopAutoRefresh();
    metricsLoader.cancel();
    logsLoader.cancel();
    for (const page of SIGNAL_PAGES) ui[page + 'View'].hidden = true;
  }

  // Showing a page beside traces: the list and the trace make way. False when it already
  // shows (the hash changed to the same page).
  function enterSignalPage(page) {
    if (state.page === page) return false;
    hideSignalPages();
    state.page = page;
    traceLoader.cancel();
    removeTraceView();
    ui.listView.hidden = true;
    ui[page + 'View'].hidden = false;
    document.title = page + ' — ' + TITLE_BASE;
    clearReady();
    return true;
  }

  // Metrics and logs do not trigger `changed`: they are polled while their page shows (and
  // the tab is visible). One interval at a time, cleared on leaving the page.
  function startAutoRefresh(loader) {
    stopAutoRefresh();
    if (state.isStatic) return;
    pageTimer = setInterval(() => {
      if (!document.hidden) loader.soon();
    }, AUTO_REFRESH_MS);
  }

  function stopAutoRefresh() {
    clearInterval(pageTimer);
    pageTimer = 0;
  }

  // Back to a hidden tab: catch up at once rather than at the next tick.
  function onVisibilityChange() {
    if (document.hidden) return;
    if (state.page === 'metrics') metricsLoader.soon();
    else if (state.page === 'logs') logsLoader.soon();
  }

  // "k=v" texts sorted by key: from the API's { key: "text" } objects, or OTLP key-value lists.
  function attributePairs(attributes) {
    if (Array.isArray(attributes)) {
      return sortedAttributes(attributes).map((kv) => String(kv.key) + '=' + anyToText(kv.value, true));
    }
    if (!attributes || typeof attributes !== 'object') return [];
    return Object.keys(attributes).sort().map((key) => {
      const value = attributes[key];
      return key + '=' + (value == null ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value));
    });
  }

  // A number from JSON, or null (serde writes a NaN or infinite f64 as null).
  function finite(value) {
    if (value == null || value === '' || typeof value === 'boolean') return null;
    const number = typeof value === 'number' ? value : Number(value);
    return Number.isFinite(number) ? number : null;
  }

  // Three significant digits, exponent notation only for the very large and very small.
  function fmtNum(x) {
    if (x == null || !Number.isFinite(x)) return '–';
    if (x === 0) return '0';
    const magnitude = Math.abs(x);
    if (magnitude >= 1e9 || magnitude < 1e-4) return x.toExponential(2).replace(/\.?0+e/, 'e');
    return String(Number(x.toPrecision(3)));
  }

  function fmtPercent(ratio) {
    return Number.isFinite(ratio) ? (ratio * 100).toFixed(1) + ' %' : '–';
  }

  // ======================================================================== metrics page

  const metricsLoader = new Throttled(loadMetrics);
  const UNIT_NANOS = new Map([['s', 1e9], ['ms', 1e6], ['us', 1e3], ['µs', 1e3], ['ns', 1]]); // read as durations
  const CHART_FONT = '10px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

  function buildMetricsView() {
    ui.metricsSummary = el('span', { id: 'metrics-summary', class: 'page-summary' });
    ui.metricsRefresh = el('button', {
      id: 'metrics-refresh', type: 'button', text: 'refresh', title: 'fetch the metrics again (also every 5 s)',
    });
    ui.metricsRefresh.addEventListener('click', () => metricsLoader.now());
    if (state.isStatic) ui.metricsRefresh.hidden = true;
    ui.metricsStatus = el('div', { class: 'status-line' });
    ui.metricsStatus.hidden = true;
    ui.metricsBody = el('div', { class: 'page-body metrics-body' });
    ui.metricsView = el('section', { id: 'metrics-view', class: 'view' }, [
      el('div', { class: 'toolbar' }, [
        ui.metricsSummary,
        el('span', { class: 'muted', text: 'counters as a rate per second, histograms as p50 / p95 / p99' }),
        ui.metricsRefresh,
      ]),
      ui.metricsStatus,
      el('div', { class: 'page-scroll' }, [ui.metricsBody]),
    ]);
    ui.metricsView.hidden = true;
    return ui.metricsView;
  }

  function showMetrics() {
    if (!enterSignalPage('metrics')) return;
    if (state.isStatic) {
      renderStaticMetrics();
      return;
    }
    // The last answer at once (if any), a fresh one as soon as it comes; "ready" waits for it.
    if (state.metrics.points) renderMetrics();
    metricsLoader.now();
    startAutoRefresh(metricsLoader);
  }

  function renderStaticMetrics() {
    const data = staticPart('metrics');
    if (data === undefined) {
      clear(ui.metricsBody);
      ui.metricsBody.appendChild(needsServe('metrics'));
      ui.metricsSummary.textContent = '';
    } else {
      state.metrics.points = list(Array.isArray(data) ? data : data && data.points);
      renderMetrics();
    }
    setReady('metrics');
  }

  async function loadMetrics(signal) {
    if (state.isStatic) return;
    const got = await fetchJson('/api/metrics', signal);
    if (!got || state.page !== 'metrics') return;
    showStatus(ui.metricsStatus, got.error || null);
    if (!got.error && got.body !== state.metrics.lastBody) {
      state.metrics.lastBody = got.body;
      state.metrics.points = list(got.json && got.json.points);
      renderMetrics(); // identical answers are not redrawn (the scroll position stays anyway)
    }
    setReady('metrics');
  }

  function renderMetrics() {
    const metrics = groupMetrics(state.metrics.points || []);
    const seriesCount = metrics.reduce((sum, metric) => sum + metric.series.length, 0);
    const pointCount = (state.metrics.points || []).length;
    ui.metricsSummary.textContent = plural(metrics.length, 'metric') + ', ' + seriesCount + ' series, ' +
      plural(pointCount, 'point');
    const fragment = document.createDocumentFragment();
    if (metrics.length === 0) {
      fragment.appendChild(el('p', {
        class: 'empty',
        text: state.isStatic ? 'No metric points in this export.' : 'No metric points yet: waiting for metrics…',
      }));
    }
    for (const metric of metrics) fragment.appendChild(metricSection(metric));
    clear(ui.metricsBody);
    ui.metricsBody.appendChild(fragment);
  }

  // --- metrics: grouping and values

  // Points by metric name, and within a metric by series (node + sorted attributes), both
  // sorted; a series' points in time order.
  function groupMetrics(points) {
    const byName = new Map();
    for (const raw of points) {
      const name = raw.name == null ? '' : String(raw.name);
      let metric = byName.get(name);
      if (!metric) {
        metric = { name, description: '', unit: '', kind: null, temporality: '', series: new Map() };
        byName.set(name, metric);
      }
      // The latest point describes the metric (they should all agree).
      if (raw.description) metric.description = String(raw.description);
      if (raw.unit != null && raw.unit !== '') metric.unit = String(raw.unit);
      if (raw.kind != null) metric.kind = metricKind(raw.kind);
      if (raw.temporality) metric.temporality = String(raw.temporality).toLowerCase();

      const node = String(raw.node || raw.service || '');
      const pairs = attributePairs(raw.attributes);
      const key = node + '\u0000' + pairs.join('\u0001');
      let series = metric.series.get(key);
      if (!series) {
        series = { node, service: String(raw.service || ''), pairs, label: seriesLabel(node, pairs), points: [] };
        metric.series.set(key, series);
      }
      const time = parseNanos(raw.timeUnixNano);
      const value = pointValue(raw.value);
      if (time == null || value == null) continue;
      series.points.push({ time, start: parseNanos(raw.startTimeUnixNano), value });
    }
    const byText = (key) => (a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0);
    const metrics = Array.from(byName.values()).sort(byText('name'));
    for (const metric of metrics) {
      metric.kind = metric.kind || { name: 'unknown', monotonic: null };
      metric.series = Array.from(metric.series.values()).sort(byText('label'));
      for (const series of metric.series) series.points = timeOrdered(series.points);
    }
    return metrics;
  }

  function seriesLabel(node, pairs) {
    return [node ? shortNode(node) : '(no node)'].concat(pairs).join(' ');
  }

  // By time; a point exported twice (same time) counts once, the later arrival winning.
  function timeOrdered(points) {
    const sorted = points.slice().sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    return sorted.filter((point, index) => index === sorted.length - 1 || sorted[index + 1].time !== point.time);
  }

  // MetricKind as serde writes it: "gauge", "histogram", … or { "sum": { "monotonic": true } }
  // (an externally tagged enum: unit variants are strings, struct variants objects).
  function metricKind(kind) {
    const snake = (text) => String(text).replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
    if (typeof kind === 'string') return { name: snake(kind), monotonic: null };
    if (kind && typeof kind === 'object') {
      const key = Object.keys(kind)[0];
      if (key != null) {
        const inner = kind[key];
        const monotonic = inner && typeof inner === 'object' && typeof inner.monotonic === 'boolean' ? inner.monotonic : null;
        return { name: snake(key), monotonic };
      }
    }
    return { name: 'unknown', monotonic: null };
  }

  function kindText(metric) {
    const kind = metric.kind;
    let text = kind.name.replace(/_/g, ' ');
    if (kind.name === 'sum' && kind.monotonic === true) text += ' (monotonic)';
    if (kind.name === 'sum' && kind.monotonic === false) text += ' (up-down)';
    if (metric.temporality && metric.temporality !== 'unspecified') text += ' · ' + metric.temporality;
    return text;
  }

  // PointValue as serde writes it: {"int": 3}, {"double": 0.5} or {"distribution": {…}}.
  // Also a bare number, and OTLP's asInt/asDouble, to be lenient. Null when unusable.
  function pointValue(raw) {
    const scalar = finite(raw);
    if (scalar != null && typeof raw !== 'object') return { scalar };
    if (!raw || typeof raw !== 'object') return null;
    for (const key of Object.keys(raw)) {
      const name = key.toLowerCase();
      const inner = raw[key];
      if (name === 'int' || name === 'double' || name === 'asint' || name === 'asdouble') {
        const number = finite(inner);
        return number == null ? null : { scalar: number };
      }
      if (name === 'distribution' && inner && typeof inner === 'object') return { dist: distribution(inner) };
    }
    return null;
  }

  function distribution(raw) {
    const numbers = (value) => (Array.isArray(value) ? value.map((item) => finite(item)) : []);
    return {
      count: finite(raw.count) || 0,
      sum: finite(raw.sum),
      min: finite(raw.min),
      max: finite(raw.max),
      bounds: numbers(raw.bounds).filter((bound) => bound != null),
      counts: numbers(raw.bucket_counts != null ? raw.bucket_counts : raw.bucketCounts).map((count) => count || 0),
    };
  }

  function seconds(nanos) {
    return Number(nanos) / 1e9;
  }

  // A counter restarted when its start time is at or after the previous point.
  function restarted(point, previous) {
    return point.start != null && point.start >= previous.time;
  }

  // How a scalar series is drawn: a monotonic cumulative sum as a rate, a delta sum per
  // second of its window, anything else (gauges, up-down counters) as its value.
  function scalarMode(metric) {
    if (metric.kind.name !== 'sum') return 'value';
    if (metric.temporality === 'delta') return 'window';
    if (metric.temporality === 'cumulative' && metric.kind.monotonic !== false) return 'rate';
    return 'value';
  }

  // Value over the point's own window (start to time), per second; NaN without a window.
  function perSecondOfWindow(point) {
    if (point.start == null || point.start >= point.time) return NaN;
    return point.value.scalar / seconds(point.time - point.start);
  }

  // The difference to the previous point per second; the first point, and one after a reset
  // (a smaller value, or a new start time), start over: their rate is over their own window.
  function rateAt(point, previous) {
    if (previous && !restarted(point, previous) && point.value.scalar >= previous.value.scalar) {
      const elapsed = seconds(point.time - previous.time);
      return elapsed > 0 ? (point.value.scalar - previous.value.scalar) / elapsed : NaN;
    }
    return perSecondOfWindow(point);
  }

  // A cumulative distribution's window since the previous point: the difference of the
  // counts. The first point, and one after a reset (a count smaller, other bounds, a new
  // start time), is its own window. min and max stay the point's (they bound the window).
  function distributionWindow(point, previous) {
    const dist = point.value.dist;
    const before = previous && previous.value.dist;
    if (!before || restarted(point, previous) || before.counts.length !== dist.counts.length ||
      before.bounds.length !== dist.bounds.length || before.bounds.some((bound, i) => bound !== dist.bounds[i])) {
      return dist;
    }
    const counts = dist.counts.map((count, i) => count - before.counts[i]);
    if (dist.count < before.count || counts.some((count) => count < 0)) return dist;
    return {
      count: dist.count - before.count,
      sum: dist.sum != null && before.sum != null ? dist.sum - before.sum : null,
      min: dist.min,
      max: dist.max,
      bounds: dist.bounds,
      counts,
    };
  }

  // The q-quantile of explicit buckets: the bucket holding rank q × total, linearly
  // interpolated inside it. The first bucket starts at min (when known) or 0, the last one
  // (no upper bound) ends at max when known, else at the highest bound. NaN when empty.
  function quantile(dist, q) {
    const bounds = dist.bounds;
    const counts = dist.counts;
    let total = 0;
    for (const count of counts) total += count;
    if (!(total > 0) || bounds.length === 0) return NaN;
    const rank = q * total;
    let below = 0;
    let lastFilled = -1;
    for (let i = 0; i < counts.length; i++) {
      const count = counts[i];
      if (count <= 0) continue;
      lastFilled = i;
      if (below + count >= rank) return inBucket(dist, i, (rank - below) / count);
      below += count;
    }
    return lastFilled < 0 ? NaN : inBucket(dist, lastFilled, 1); // rounding: the top of the last
  }

  function inBucket(dist, index, fraction) {
    const bounds = dist.bounds;
    const i = Math.min(index, bounds.length); // more counts than bounds + 1: the overflow bucket
    let lower = i === 0 ? (dist.min != null ? Math.min(dist.min, bounds[0]) : Math.min(0, bounds[0])) : bounds[i - 1];
    let upper = i < bounds.length ? bounds[i] : dist.max != null ? Math.max(dist.max, lower) : lower;
    // min and max narrow the bucket they fall in.
    if (dist.min != null && dist.min > lower && dist.min <= upper) lower = dist.min;
    if (dist.max != null && dist.max < upper && dist.max >= lower) upper = dist.max;
    return lower + (upper - lower) * Math.min(1, Math.max(0, fraction));
  }

  // What a series draws ({ t0, xs (s since t0), span, lines [{ label, colour, ys }], zeroBased,
  // format }) and the texts beside it (latest, raw, what).
  function deriveSeries(metric, series) {
    // One type per series: the latest point's (a metric that changed type shows its newest).
    const last = series.points[series.points.length - 1];
    const isDist = !!(last && last.value.dist);
    const points = series.points.filter((point) => !!point.value.dist === isDist);
    const t0 = points.length ? points[0].time : null;
    const xs = points.map((point) => seconds(point.time - t0));
    const chart = { t0, xs, span: xs.length ? xs[xs.length - 1] : 0, lines: [], zeroBased: false, format: fmtNum };
    return isDist ? distributionSeries(metric, points, chart) : scalarSeries(metric, points, chart);
  }

  function scalarSeries(metric, points, chart) {
    const unit = metric.unit;
    const mode = scalarMode(metric);
    const ys = points.map((point, i) => (mode === 'rate' ? rateAt(point, points[i - 1])
      : mode === 'window' ? perSecondOfWindow(point) : point.value.scalar));
    chart.lines.push({ label: mode === 'value' ? 'value' : 'per second', colour: LINE_COLOUR, ys });
    const latest = lastFinite(ys);
    const lastPoint = points[points.length - 1];
    if (mode === 'value') {
      if (UNIT_NANOS.has(unit)) chart.format = (value) => fmtValue(value, unit);
      return { chart, latest: fmtValue(latest, unit), raw: '', what: 'value' };
    }
    chart.zeroBased = true;
    return {
      chart,
      latest: fmtRate(latest, unit),
      raw: lastPoint ? (mode === 'rate' ? 'total ' : 'last window ') + fmtValue(lastPoint.value.scalar, unit) : '',
      what: mode === 'rate' ? 'rate (cumulative sum)' : 'per second of each window (delta sum)',
    };
  }

  function distributionSeries(metric, points, chart) {
    const unit = metric.unit;
    const cumulative = metric.temporality === 'cumulative';
    const windows = points.map((point, i) => (cumulative ? distributionWindow(point, points[i - 1]) : point.value.dist));
    const lastPoint = points[points.length - 1];
    const raw = lastPoint ? 'count ' + fmtNum(lastPoint.value.dist.count) : '';
    chart.zeroBased = true;
    if (UNIT_NANOS.has(unit)) chart.format = (value) => fmtValue(value, unit);
    const hasBuckets = windows.some((dist) => dist.bounds.length > 0);
    if (!hasBuckets) {
      // Exponential histograms and summaries come without explicit bounds: their mean.
      const ys = windows.map((dist) => (dist.count > 0 && dist.sum != null ? dist.sum / dist.count : NaN));
      chart.lines.push({ label: 'mean', colour: LINE_COLOUR, ys });
      return { chart, latest: 'mean ' + fmtValue(lastFinite(ys), unit), raw, what: 'mean (no explicit buckets)' };
    }
    for (const quant of QUANTILES) {
      chart.lines.push({ label: quant.label, colour: quant.colour, ys: windows.map((dist) => quantile(dist, quant.q)) });
    }
    // The latest window with measurements gives all three.
    let index = windows.length - 1;
    while (index >= 0 && !Number.isFinite(chart.lines[0].ys[index])) index--;
    const latest = index < 0 ? '–' : chart.lines.map((line) => line.label + ' ' + fmtValue(line.ys[index], unit)).join(' · ');
    return { chart, latest, raw, what: 'quantiles estimated from the buckets', legend: true };
  }

  function lastFinite(values) {
    for (let i = values.length - 1; i >= 0; i--) if (Number.isFinite(values[i])) return values[i];
    return NaN;
  }

  function fmtValue(value, unit) {
    if (!Number.isFinite(value)) return '–';
    if (UNIT_NANOS.has(unit)) return fmtDur(value * UNIT_NANOS.get(unit));
    return fmtNum(value) + (!unit || unit === '1' ? '' : ' ' + unit);
  }

  function fmtRate(value, unit) {
    if (!Number.isFinite(value)) return '–';
    return fmtNum(value) + (!unit || unit === '1' ? '' : ' ' + unit) + '/s';
  }

  // --- metrics: rendering

  function metricSection(metric) {
    const head = el('div', { class: 'metric-head' }, [
      el('h3', { class: 'metric-name', text: metric.name || '(no name)' }),
      metric.unit ? el('span', { class: 'badge metric-unit', title: 'unit', text: metric.unit }) : null,
      el('span', { class: 'metric-kind muted', text: kindText(metric) }),
      el('span', { class: 'muted', text: metric.series.length + ' series' }),
    ]);
    const grid = el('div', { class: 'metric-series-list' });
    for (const series of metric.series) grid.appendChild(seriesCard(metric, series));
    const box = el('section', { class: 'metric-section' }, [
      head,
      metric.description ? el('p', { class: 'metric-description muted', text: metric.description }) : null,
      grid,
    ]);
    box.dataset.metric = metric.name;
    return box;
  }

  // One series: its label, a chart and, beside it, the latest value.
  function seriesCard(metric, series) {
    const view = deriveSeries(metric, series);
    const canvas = el('canvas', {
      class: 'metric-chart', role: 'img', 'aria-label': metric.name + ' ' + series.label + ': ' + view.latest,
    });
    canvas.dataset.metric = metric.name;
    canvas.dataset.series = series.label;
    canvas.dataset.points = String(view.chart.xs.length);
    drawChart(canvas, view.chart);
    const side = el('div', { class: 'metric-side' }, [
      el('span', { class: 'metric-latest', title: 'latest', text: view.latest }),
      view.raw ? el('span', { class: 'metric-raw muted', text: view.raw }) : null,
      view.legend ? chartLegend(view.chart.lines) : null,
      el('span', { class: 'metric-what muted', text: view.what }),
    ]);
    const title = [series.node || '(no node)'].concat(series.service && series.service !== series.node
      ? ['service ' + series.service] : [], series.pairs).join('\n');
    const card = el('div', { class: 'metric-series' }, [
      el('div', { class: 'metric-series-label', title, text: series.label }),
      el('div', { class: 'metric-series-body' }, [canvas, side]),
    ]);
    card.dataset.series = series.label;
    return card;
  }

  function chartLegend(lines) {
    return el('div', { class: 'metric-legend' }, lines.map((line) => {
      const swatch = el('span', { class: 'swatch', text: '■' });
      swatch.style.color = line.colour;
      return el('span', { class: 'metric-legend-item' }, [swatch, ' ' + line.label]);
    }));
  }

  // A line chart, no library: the values' min and max on the left, the first point's clock
  // time and the time span below. NaN breaks a line; a lone point is a dot.
  function drawChart(canvas, chart) {
    const ratio = window.devicePixelRatio || 1; // sharp on high-density screens
    canvas.width = Math.round(CHART_W * ratio);
    canvas.height = Math.round(CHART_H * ratio);
    canvas.style.width = CHART_W + 'px';
    canvas.style.height = CHART_H + 'px';
    const ctx = canvas.getContext && canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const box = { left: 54, right: CHART_W - 6, top: 6, bottom: CHART_H - 16 };
    ctx.font = CHART_FONT;

    ctx.strokeStyle = '#d0d7de';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(box.left + 0.5, box.top);
    ctx.lineTo(box.left + 0.5, box.bottom + 0.5);
    ctx.lineTo(box.right, box.bottom + 0.5);
    ctx.stroke();

    ctx.fillStyle = '#656d76';
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    if (chart.t0 != null) ctx.fillText(fmtClock(chart.t0), box.left, box.bottom + 3);
    ctx.textAlign = 'right';
    const count = chart.xs.length;
    ctx.fillText(count === 0 ? 'no points' : count === 1 ? '1 point' : 'span ' + fmtNum(chart.span) + ' s', box.right, box.bottom + 3);

    let low = Infinity;
    let high = -Infinity;
    for (const line of chart.lines) {
      for (const y of line.ys) {
        if (!Number.isFinite(y)) continue;
        if (y < low) low = y;
        if (y > high) high = y;
      }
    }
    if (low > high) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(count === 1 ? 'needs a second point' : 'no value', (box.left + box.right) / 2, (box.top + box.bottom) / 2);
      return;
    }
    if (chart.zeroBased && low > 0) low = 0; // rates and latencies read from zero
    if (low === high) {
      if (low === 0) high = 1;
      else {
        const pad = Math.abs(low) * 0.1;
        high += pad;
        if (!(chart.zeroBased && low === 0)) low -= pad;
      }
    }
    ctx.textAlign = 'right';
    ctx.textBaseline = 'top';
    ctx.fillText(chart.format(high), box.left - 4, box.top - 1, box.left - 6);
    ctx.textBaseline = 'bottom';
    ctx.fillText(chart.format(low), box.left - 4, box.bottom + 1, box.left - 6);

    const px = (x) => (chart.span > 0 ? box.left + 3 + (x / chart.span) * (box.right - box.left - 6) : (box.left + box.right) / 2);
    const py = (y) => box.bottom - 2 - ((y - low) / (high - low)) * (box.bottom - box.top - 3);
    ctx.lineWidth = 1.5;
    ctx.lineJoin = 'round';
    for (const line of chart.lines) {
      ctx.strokeStyle = line.colour;
      ctx.fillStyle = line.colour;
      let run = [];
      const flush = () => {
        if (run.length === 1) ctx.fillRect(run[0][0] - 1.5, run[0][1] - 1.5, 3, 3);
        else if (run.length > 1) {
          ctx.beginPath();
          ctx.moveTo(run[0][0], run[0][1]);
          for (let i = 1; i < run.length; i++) ctx.lineTo(run[i][0], run[i][1]);
          ctx.stroke();
        }
        run = [];
      };
      line.ys.forEach((y, i) => {
        if (Number.isFinite(y)) run.push([px(chart.xs[i]), py(y)]);
        else flush();
      });
      flush();
    }
  }

  // ======================================================================== logs page

  const logsLoader = new Throttled(loadLogs);

  function buildLogsView() {
    ui.logsCount = el('span', { id: 'logs-count', class: 'page-summary' });
    ui.logsFilter = el('input', {
      id: 'logs-filter', type: 'text', placeholder: 'body, event or attribute contains…',
      autocomplete: 'off', spellcheck: 'false', 'aria-label': 'filter the log records',
    });
    ui.logsSeverity = el('select', { id: 'logs-severity', title: 'the least severity shown' }, [
      el('option', { value: '0', text: 'all severities' }),
      el('option', { value: String(SEVERITY_WARN), text: 'warn and above' }),
      el('option', { value: String(SEVERITY_ERROR), text: 'error and above' }),
    ]);
    ui.logsRefresh = el('button', {
      id: 'logs-refresh', type: 'button', text: 'refresh', title: 'fetch the logs again (also every 5 s)',
    });
    if (state.isStatic) ui.logsRefresh.hidden = true;
    ui.logsStatus = el('div', { class: 'status-line' });
    ui.logsStatus.hidden = true;

    const head = el('div', { class: 'log-head', role: 'row' }, [
      el('div', { text: 'time' }),
      el('div', { text: 'severity' }),
      el('div', { text: 'node' }),
      el('div', { text: 'event' }),
      el('div', { text: 'body' }),
      el('div', { text: 'attributes' }),
      el('div', { text: 'trace' }),
    ]);
    ui.logsSpacer = el('div', { class: 'log-spacer' });
    ui.logsEmpty = el('div', { class: 'empty' });
    ui.logsEmpty.hidden = true;
    ui.logsScroll = el('div', { class: 'logs-scroll', role: 'table' }, [head, ui.logsSpacer, ui.logsEmpty]);

    ui.logsView = el('section', { id: 'logs-view', class: 'view' }, [
      el('div', { class: 'toolbar' }, [
        ui.logsCount,
        el('div', { class: 'filters' }, [ui.logsFilter, ui.logsSeverity]),
        ui.logsRefresh,
      ]),
      ui.logsStatus,
      ui.logsScroll,
    ]);
    ui.logsView.hidden = true;

    logRows = new VirtualRows(ui.logsScroll, ui.logsSpacer, LOG_ROW_H, buildLogRow);
    wireLogsEvents();
    return ui.logsView;
  }

  function wireLogsEvents() {
    ui.logsRefresh.addEventListener('click', () => logsLoader.now());
    ui.logsFilter.addEventListener('input', () => {
      state.logs.text = ui.logsFilter.value.trim().toLowerCase();
      applyLogFilters();
    });
    ui.logsSeverity.addEventListener('change', () => {
      state.logs.minSeverity = Number(ui.logsSeverity.value) || 0;
      applyLogFilters();
    });
  }

  function showLogs() {
    if (!enterSignalPage('logs')) return;
    if (state.isStatic) {
      renderStaticLogs();
      return;
    }
    if (state.logs.records) applyLogFilters(); // the last answer at once; ready on the fresh one
    logsLoader.now();
    startAutoRefresh(logsLoader);
  }

  function renderStaticLogs() {
    const data = staticPart('logs');
    if (data === undefined) {
      ui.logsCount.textContent = '';
      clear(ui.logsEmpty);
      ui.logsEmpty.appendChild(needsServe('logs'));
      ui.logsEmpty.hidden = false;
      logRows.setCount(0);
    } else {
      state.logs.records = normaliseLogs(list(Array.isArray(data) ? data : data && data.records));
      applyLogFilters();
    }
    setReady('logs');
  }

  async function loadLogs(signal) {
    if (state.isStatic) return;
    const got = await fetchJson('/api/logs', signal);
    if (!got || state.page !== 'logs') return;
    showStatus(ui.logsStatus, got.error || null);
    if (!got.error && got.body !== state.logs.lastBody) {
      state.logs.lastBody = got.body;
      state.logs.records = normaliseLogs(list(got.json && got.json.records));
      applyLogFilters();
    } else if (got.error && !state.logs.records) {
      renderLogs();
    }
    setReady('logs');
  }

  // Once per answer: texts for the cells and the filter, newest first (records without a
  // time after the others, the latest arrival first).
  function normaliseLogs(records) {
    const normalised = records.map((raw, index) => {
      const attributes = attributePairs(raw.attributes);
      const body = raw.body == null ? '' : typeof raw.body === 'object' ? anyToText(raw.body) : String(raw.body);
      const event = raw.eventName == null ? '' : String(raw.eventName);
      return {
        index,
        time: parseNanos(raw.timeUnixNano),
        severity: Number(raw.severityNumber) || 0,
        severityText: raw.severityText == null ? '' : String(raw.severityText),
        body,
        hasBody: raw.body != null,
        event,
        attributes,
        traceId: normId(raw.traceId),
        spanId: normId(raw.spanId),
        node: String(raw.node || ''),
        service: String(raw.service || ''),
        haystack: (body + '\n' + event + '\n' + attributes.join('\n')).toLowerCase(),
      };
    });
    return normalised.sort((a, b) => {
      if (a.time != null && b.time != null && a.time !== b.time) return a.time > b.time ? -1 : 1;
      if ((a.time == null) !== (b.time == null)) return a.time == null ? 1 : -1;
      return b.index - a.index;
    });
  }

  function applyLogFilters() {
    const text = state.logs.text;
    const least = state.logs.minSeverity;
    state.logs.filtered = (state.logs.records || []).filter((record) =>
      record.severity >= least && (!text || record.haystack.includes(text)));
    renderLogs();
  }

  function renderLogs() {
    const records = state.logs.records;
    const shown = state.logs.filtered.length;
    const total = records ? records.length : 0;
    ui.logsCount.textContent = plural(shown, 'record') + (shown !== total ? ' of ' + total : '');
    let empty = '';
    if (!records) empty = 'No logs loaded.';
    else if (total === 0) empty = state.isStatic ? 'No log records in this export.' : 'No log records yet: waiting for logs…';
    else if (shown === 0) empty = 'No record matches the filters.';
    ui.logsEmpty.textContent = empty;
    ui.logsEmpty.hidden = !empty;
    if (state.page !== 'logs') return; // rendered when shown (the rows need a layout)
    logRows.setCount(shown);
  }

  function severityLabel(record) {
    if (record.severityText) return record.severityText;
    const n = record.severity;
    return n >= 21 ? 'FATAL' : n >= 17 ? 'ERROR' : n >= 13 ? 'WARN' : n >= 9 ? 'INFO' : n >= 5 ? 'DEBUG' : n >= 1 ? 'TRACE' : '–';
  }

  function severityClass(number) {
    return number >= SEVERITY_ERROR ? 'sev-error' : number >= SEVERITY_WARN ? 'sev-warn' : number >= 9 ? 'sev-info' : 'sev-debug';
  }

  function buildLogRow(index) {
    const record = state.logs.filtered[index];
    const row = el('div', { class: 'log-row' + (record.severity >= SEVERITY_ERROR ? ' is-error' : ''), role: 'row' });
    row.dataset.index = String(index);
    const attributes = record.attributes.join(' ');
    const nodeName = record.node || record.service;
    const trace = el('div', { class: 'log-trace' });
    if (record.traceId) {
      trace.appendChild(el('a', {
        class: 'log-trace-link',
        href: traceHash(record.traceId, record.spanId),
        title: 'trace ' + record.traceId + (record.spanId ? '\nspan ' + record.spanId : ''),
        text: short8(record.traceId.replace(/^0+(?=.)/, '')),
      }));
    }
    row.appendChild(el('div', { class: 'log-time', title: fmtDateTime(record.time), text: fmtClock(record.time) }));
    row.appendChild(el('div', {
      class: 'log-sev ' + severityClass(record.severity), title: 'severity number ' + record.severity, text: severityLabel(record),
    }));
    row.appendChild(el('div', {
      class: 'log-node', title: nodeName + (record.service && record.service !== nodeName ? '\nservice ' + record.service : ''),
      text: nodeName ? shortNode(nodeName) : '',
    }));
    row.appendChild(el('div', { class: 'log-event', title: record.event, text: record.event }));
    row.appendChild(el('div', {
      class: 'log-body' + (record.hasBody ? '' : ' muted'), title: record.body, text: record.hasBody ? record.body : '(no body)',
    }));
    row.appendChild(el('div', { class: 'log-attributes', title: record.attributes.join('\n'), text: attributes }));
    row.appendChild(trace);
    return row;
  }

  // ======================================================================== contract page

  const contractLoader = new Throttled(loadContract);

  function buildContractView() {
    ui.contractSummary = el('span', { id: 'contract-summary', class: 'page-summary' });
    ui.contractRefresh = el('button', {
      id: 'contract-refresh', type: 'button', text: 'check again',
      title: 'check everything received against the contract again',
    });
    // Not polled: the check runs over everything received, so only on entering and here.
    ui.contractRefresh.addEventListener('click', () => contractLoader.now());
    if (state.isStatic) ui.contractRefresh.hidden = true;
    ui.contractStatus = el('div', { class: 'status-line' });
    ui.contractStatus.hidden = true;
    ui.contractBody = el('div', { class: 'page-body contract-body' });
    ui.contractView = el('section', { id: 'contract-view', class: 'view' }, [
      el('div', { class: 'toolbar' }, [ui.contractSummary, ui.contractRefresh]),
      ui.contractStatus,
      el('div', { class: 'page-scroll' }, [ui.contractBody]),
    ]);
    ui.contractView.hidden = true;
    return ui.contractView;
  }

  // An /api/contract answer with a report (the static export may omit the "contract" key).
  function isContractReport(json) {
    if (!json || typeof json !== 'object' || json.contract === false) return false;
    return json.contract === true || Array.isArray(json.findings) || (json.statistics && typeof json.statistics === 'object');
  }

  // Whether `serve` has a contract: shows its link, and spares /api/findings requests.
  function noteContract(present) {
    state.contract.present = present;
    ui.nav.contract.hidden = !present;
  }

  function showContract() {
    if (!enterSignalPage('contract')) return;
    if (state.isStatic) {
      const report = staticPart('contract');
      clear(ui.contractBody);
      if (report === undefined) {
        ui.contractSummary.textContent = '';
        ui.contractBody.appendChild(needsServe('contract findings'));
      } else renderContract(report || {});
      setReady('contract');
      return;
    }
    if (state.contract.report) {
      renderContract(state.contract.report); // the last answer at once; ready on the fresh one
      state.contract.renderedBody = state.contract.body;
    }
    // The boot-time question may still be under way: its answer serves this page too.
    if (!contractLoader.controller) contractLoader.now();
  }

  async function loadContract(signal) {
    if (state.isStatic) return;
    const got = await fetchJson('/api/contract', signal);
    if (!got) return;
    if (got.error) {
      if (state.page === 'contract') {
        showStatus(ui.contractStatus, got.error);
        setReady('contract');
      }
      return;
    }
    const report = got.json && typeof got.json === 'object' ? got.json : {};
    noteContract(report.contract === true);
    state.contract.report = report;
    state.contract.body = got.body;
    if (state.page !== 'contract') return;
    showStatus(ui.contractStatus, null);
    if (got.body !== state.contract.renderedBody) {
      state.contract.renderedBody = got.body;
      renderContract(report);
    }
    setReady('contract');
  }

  function renderContract(report) {
    clear(ui.contractBody);
    if (!isContractReport(report)) {
      ui.contractSummary.textContent = 'no contract';
      ui.contractBody.appendChild(el('p', { class: 'empty' }, [
        'This receiver has no contract: start it with ', el('code', { text: 'serve --contract <registry>' }),
        ' to see what the telemetry lacks, and how much of the contract it covers.',
      ]));
      return;
    }
    const stats = report.statistics && typeof report.statistics === 'object' ? report.statistics : {};
    const findings = list(report.findings);
    const groups = list(stats.groups);
    ui.contractSummary.textContent = plural(findings.length, 'finding') + ', ' + plural(groups.length, 'group');
    ui.contractBody.appendChild(coverageSummary(stats));
    ui.contractBody.appendChild(groupTable(groups));
    ui.contractBody.appendChild(findingsByLevel(findings));
  }

  function coverageSummary(stats) {
    const ratio = finite(stats.registry_coverage);
    const counts = stats.advice_level_counts && typeof stats.advice_level_counts === 'object' ? stats.advice_level_counts : {};
    const meta = el('div', { class: 'trace-meta' }, [
      metaItem('spans', String(finite(stats.total_spans) == null ? '–' : stats.total_spans)),
      metaItem('metric points', String(finite(stats.total_metric_points) == null ? '–' : stats.total_metric_points)),
      metaItem('logs', String(finite(stats.total_logs) == null ? '–' : stats.total_logs)),
    ]);
    for (const level of LEVELS) {
      const count = finite(counts[level]) || 0;
      meta.appendChild(metaItem(level === 'information' ? 'information' : level + 's', String(count),
        level === 'violation' && count > 0 ? 'has-errors' : ''));
    }
    return el('div', { class: 'contract-summary' }, [
      el('div', { class: 'coverage-overall' }, [
        el('span', { id: 'contract-coverage', class: 'coverage-number', text: fmtPercent(ratio) }),
        el('span', { class: 'muted', text: ' of the contract seen (each signal and each declared attribute counts one)' }),
      ]),
      coverageBar(ratio, true),
      meta,
    ]);
  }

  // The share of a group seen: the server's ratio if it sends one, else GroupCoverage::ratio
  // (the signal itself and each declared attribute count one each).
  function groupRatio(group) {
    const given = finite(group.ratio);
    if (given != null) return given;
    const seenCount = Array.isArray(group.attributes_seen) ? group.attributes_seen.length : 0;
    const missingCount = Array.isArray(group.attributes_missing) ? group.attributes_missing.length : 0;
    return ((finite(group.samples) > 0 ? 1 : 0) + seenCount) / (1 + seenCount + missingCount);
  }

  function coverageBar(ratio, large) {
    const fill = el('div', { class: 'coverage-fill' });
    const value = Number.isFinite(ratio) ? Math.max(0, Math.min(1, ratio)) : 0;
    fill.style.width = (value * 100).toFixed(2) + '%';
    fill.classList.add(value >= 0.999 ? 'cov-full' : value >= 0.5 ? 'cov-partial' : 'cov-low');
    return el('div', { class: 'coverage-bar' + (large ? ' large' : ''), title: fmtPercent(ratio) }, [fill]);
  }

  function groupTable(groups) {
    const body = el('tbody');
    for (const group of groups) {
      const ratio = groupRatio(group);
      const samples = finite(group.samples) || 0;
      const missing = Array.isArray(group.attributes_missing) ? group.attributes_missing.map(String) : [];
      const seen = Array.isArray(group.attributes_seen) ? group.attributes_seen.map(String) : [];
      const unseen = [];
      if (samples === 0) unseen.push(el('span', { class: 'unseen-signal', text: 'the ' + (group.signal_type || 'signal') + ' itself' }));
      if (missing.length > 0) {
        unseen.push(el('span', { class: 'unseen-attributes mono', text: (samples === 0 ? ', ' : '') + missing.join(', ') }));
      }
      const row = el('tr', { class: 'contract-group' + (samples === 0 ? ' never-seen' : '') }, [
        el('td', { title: 'group ' + String(group.id == null ? '' : group.id) }, [
          el('span', { class: 'badge', text: String(group.signal_type || '?') }),
          ' ',
          el('span', { class: 'mono', text: String(group.name == null ? '' : group.name) }),
        ]),
        el('td', { class: 'num', text: String(samples) }),
        el('td', { title: seen.length ? 'seen: ' + seen.join(', ') : '' }, [
          el('div', { class: 'coverage-cell' }, [
            coverageBar(ratio, false),
            el('span', { class: 'coverage-text', text: fmtPercent(ratio) }),
          ]),
        ]),
        el('td', {}, unseen.length ? unseen : [el('span', { class: 'muted', text: 'everything seen' })]),
      ]);
      row.dataset.group = String(group.id == null ? '' : group.id);
      body.appendChild(row);
    }
    const table = el('table', { id: 'contract-groups', class: 'contract-table' }, [
      el('thead', {}, [el('tr', {}, [
        el('th', { text: 'group' }),
        el('th', { class: 'num', text: 'samples' }),
        el('th', { text: 'coverage' }),
        el('th', { text: 'never seen' }),
      ])]),
      body,
    ]);
    return el('section', { class: 'contract-section' }, [
      el('h3', { text: 'coverage by group (' + groups.length + ')' }),
      groups.length ? table : el('p', { class: 'muted none', text: 'The contract declares no group.' }),
    ]);
  }

  // Violations first, then improvements, then information (and any other level last).
  function findingsByLevel(findings) {
    const box = el('section', { id: 'contract-findings', class: 'contract-section' }, [
      el('h3', { text: 'findings (' + findings.length + ')' }),
    ]);
    if (findings.length === 0) {
      box.appendChild(el('p', { class: 'muted none', text: 'No findings: what arrived follows the contract.' }));
      return box;
    }
    for (const level of LEVELS.concat(['other'])) {
      const found = findings.filter((finding) => levelName(finding.level) === level);
      if (found.length === 0) continue;
      const group = el('div', { class: 'finding-group' }, [
        el('h4', { class: 'level-heading level-' + level, text: level + ' (' + found.length + ')' }),
        el('ul', { class: 'finding-list' }, found.map((finding) => findingItem(finding, true))),
      ]);
      group.dataset.level = level;
      box.appendChild(group);
    }
    return box;
  }

  // ======================================================================== boot

  function init() {
    const data = document.getElementById('p2p-otel-data');
    if (data) {
      state.isStatic = true;
      try {
        state.staticData = JSON.parse(data.textContent || '{}') || {};
      } catch (error) {
        state.staticData = { search: { traces: [] }, traces: {}, error: error.message };
      }
    }
    buildShell();
    if (state.isStatic && state.staticData.error) showListStatus('the embedded data is not valid JSON: ' + state.staticData.error);
    if (state.isStatic) noteContract(isContractReport(staticPart('contract')));
    window.addEventListener('hashchange', route);
    window.addEventListener('resize', () => {
      if (state.page === 'list') listRows.schedule();
      else if (state.page === 'logs') logRows.schedule();
      else if (spanRows) spanRows.schedule();
    });
    document.addEventListener('keydown', onKeyDown);
    document.addEventListener('visibilitychange', onVisibilityChange);
    route();
    startStream();
    // Whether `serve` has a contract (its link, and the findings on traces); the contract
    // page may already have asked.
    if (!state.isStatic && !contractLoader.controller && !state.contract.report) contractLoader.now();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
