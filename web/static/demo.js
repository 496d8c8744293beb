// demo.js: the duplex demo page. One channel, one pane per transport:
// four duplex.js subscriptions (ws, sse, ndjson, poll) and a fifth pane
// that polls the history endpoint with If-None-Match, the way a plain
// request/response client would. Each pane measures delivery latency from
// the envelope's `time` (the hub's publish time, Unix ms), counts what it
// received, and checks the offsets: every one once, in order, or a gap the
// hub announced.
//
// Settings live in the URL (/?channel=chat&interval=2&transports=…&from=0),
// so a link shows someone else the same view. window.duplexDemo exposes the
// panes' figures for the end-to-end tests (docs/client.md, "The demo page").

import { connect } from '/duplex.js';

const KINDS = {
  ws: {
    title: 'WebSocket',
    explain: 'One long-lived connection carrying both directions, with a few bytes of framing per message: ' +
      'the lowest overhead and latency, and this page could publish over it too. Needs every proxy on the ' +
      'way to pass the Upgrade; some corporate ones do not.',
  },
  sse: {
    title: 'Server-Sent Events',
    explain: 'EventSource: an HTTP response that never ends, server to browser only. Simple to serve, the ' +
      'browser reconnects by itself with Last-Event-ID, and it is plain HTTP, so proxies and HTTP/2 carry it. ' +
      'Pick it when the page only listens.',
  },
  ndjson: {
    title: 'NDJSON stream',
    explain: 'A fetch() whose body streams one JSON object per line, read with ReadableStream. It works where ' +
      'EventSource does not: custom headers such as Authorization, POST bodies, clients that are not browsers. ' +
      'Reconnecting is the client\'s job.',
  },
  poll: {
    title: 'Long polling',
    explain: 'A request the hub holds open until there is something new (or a timeout), answered with the ' +
      'whole batch; the client asks again at once. Works through anything that speaks HTTP, at the cost of ' +
      'one request per batch and a round trip after each.',
  },
  rest: {
    title: 'Request/response polling',
    explain: 'GET the channel\'s history every few seconds with If-None-Match: an unchanged answer is a ' +
      'bodyless 304, and pages are cacheable by any HTTP cache or CDN. The simplest client there is; ' +
      'its latency is the polling interval.',
  },
  auto: {
    title: 'auto',
    explain: 'duplex.js choosing for itself: WebSocket, then SSE, then NDJSON, then long polling, falling ' +
      'back when one cannot open here or keeps dying. The pane names the one it settled on.',
  },
};
const DEFAULT_TRANSPORTS = ['ws', 'sse', 'ndjson', 'poll', 'rest'];
const WINDOW = 200; // latency samples per pane for p50/p99 and the sparkline
const CHANNEL_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;

const params = new URLSearchParams(location.search);
const settings = {
  channel: CHANNEL_RE.test(params.get('channel') || '') ? params.get('channel') : 'chat',
  interval: clamp(Number(params.get('interval')) || 2, 0.5, 60),
  from: /^\d+$/.test(params.get('from') || '') ? params.get('from') : 'now',
  transports: (params.get('transports') || DEFAULT_TRANSPORTS.join(','))
    .split(',').filter((t, i, all) => KINDS[t] && all.indexOf(t) === i),
  token: params.get('token') || '',
};
if (settings.transports.length === 0) settings.transports = DEFAULT_TRANSPORTS;

const statusEl = document.getElementById('status');
const panesEl = document.getElementById('panes');
const publisher = connect('', { token: settings.token });
const panes = {};

window.duplexDemo = { panes, channel: settings.channel, ready: false, settings };

function clamp(n, lo, hi) { return Math.min(hi, Math.max(lo, n)); }

function say(text) { statusEl.textContent = text; }

function settingsURL(s) {
  const q = new URLSearchParams({ channel: s.channel, interval: String(s.interval) });
  if (s.from !== 'now') q.set('from', s.from);
  if (s.transports.join(',') !== DEFAULT_TRANSPORTS.join(',')) q.set('transports', s.transports.join(','));
  if (s.token) q.set('token', s.token);
  return `/?${q}`;
}

function hubURL(path, query = []) {
  const u = new URL(path, location.origin);
  for (const [k, v] of query) u.searchParams.set(k, v);
  if (settings.token) u.searchParams.set('token', settings.token);
  return u;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function formatMs(ms) {
  if (ms == null) return '–';
  return ms < 10 ? `${ms.toFixed(1)} ms` : ms < 10000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// OffsetCheck follows one pane's channel position: each message must be the
// one after the last, in the same epoch. A gap notice from the hub (history
// did not hold what came before `next`, or the channel restarted with a new
// epoch) moves the position on and is counted as a gap, not as loss.
class OffsetCheck {
  constructor(epoch, offset) {
    this.epoch = epoch;
    this.last = offset;
    this.lost = 0;
    this.duplicated = 0;
    this.gaps = 0;
    this.skipped = 0; // messages a gap in the same epoch passed over
    this.unannounced = 0; // epoch changes with no gap notice first
    this.offsets = [];
  }

  message(env) {
    if (env.epoch !== this.epoch) {
      // An empty epoch is a channel nothing was published to yet (the Redis
      // engine gives it its epoch with the first publish): its first epoch
      // continues from where we were. Any other change needs a gap first.
      if (this.epoch !== '') {
        this.unannounced++;
        this.last = env.offset - 1;
      }
      this.epoch = env.epoch;
    }
    if (env.offset <= this.last) { this.duplicated++; return false; }
    if (env.offset > this.last + 1) this.lost += env.offset - this.last - 1;
    this.last = env.offset;
    this.offsets.push(env.offset);
    return true;
  }

  gap(epoch, next) {
    this.gaps++;
    if (epoch === this.epoch && next - 1 > this.last) this.skipped += next - 1 - this.last;
    this.epoch = epoch;
    this.last = next - 1;
  }

  text() {
    const parts = [`${this.lost} lost, ${this.duplicated} duplicated`];
    if (this.gaps) {
      parts.push(this.skipped ? `${this.gaps} gap (${this.skipped} no longer in the hub's history)`
        : `${this.gaps} gap (the channel restarted, new epoch)`);
    }
    if (this.unannounced) parts.push(`${this.unannounced} epoch change without a gap notice`);
    return parts.join(', ');
  }

  get ok() { return this.lost === 0 && this.duplicated === 0 && this.unannounced === 0; }
}

// Pane is what every transport's pane shares: the DOM, the latency window,
// the offset check and a redraw batched into one animation frame.
class Pane {
  constructor(kind) {
    this.kind = kind;
    const el = document.getElementById('pane-template').content.firstElementChild.cloneNode(true);
    el.classList.add(kind);
    el.id = `pane-${kind}`;
    const h2 = el.querySelector('h2');
    h2.textContent = KINDS[kind].title;
    h2.id = `pane-${kind}-title`;
    el.setAttribute('aria-labelledby', h2.id);
    el.querySelector('.explain').textContent = KINDS[kind].explain;
    this.cutButton = el.querySelector('.cut');
    this.cutButton.setAttribute('aria-label', `cut the ${KINDS[kind].title} connection`);
    this.cutButton.addEventListener('click', () => this.cut());
    this.canvas = el.querySelector('canvas');
    this.canvas.setAttribute('aria-label', `${KINDS[kind].title} latency, last ${WINDOW} messages`);
    this.fields = {};
    for (const f of el.querySelectorAll('[data-field]')) this.fields[f.dataset.field] = f;
    this.el = el;
    this.latencies = [];
    this.lastLatency = null;
    this.check = null;
    this.stateText = 'starting';
    this.stateClass = 'connecting';
    this.dirty = false;
    panesEl.append(el);
  }

  // received records one delivered envelope.
  received(env) {
    if (!this.check.message(env)) return;
    const ms = Math.max(0, Date.now() - env.time);
    this.lastLatency = ms;
    this.latencies.push(ms);
    if (this.latencies.length > WINDOW) this.latencies.shift();
    this.redraw();
  }

  gap(g) {
    this.check.gap(g.epoch, g.next);
    this.redraw();
  }

  setState(text, cls) {
    this.stateText = text;
    this.stateClass = cls;
    this.redraw();
  }

  redraw() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => { this.dirty = false; this.render(); });
  }

  percentile(p) {
    if (this.latencies.length === 0) return null;
    const s = [...this.latencies].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))];
  }

  render() {
    const st = this.stats();
    const f = this.fields;
    f.state.textContent = this.stateText;
    f.state.className = `state ${this.stateClass}`;
    f.last.textContent = formatMs(this.lastLatency);
    f.p50.textContent = formatMs(this.percentile(0.5));
    f.p99.textContent = formatMs(this.percentile(0.99));
    f.messages.textContent = st.messages;
    f.bytes.textContent = formatBytes(st.bytes);
    f.requests.textContent = st.requests;
    f.reconnects.textContent = st.reconnects;
    f.ok.textContent = st.ok ?? 0;
    f.notModified.textContent = st.notModified ?? 0;
    f.offset.textContent = this.check ? `${this.check.last}` : '–';
    if (this.check) {
      f.check.textContent = this.check.text();
      f.check.className = `check${this.check.ok ? (this.check.gaps ? ' gap' : '') : ' bad'}`;
    }
    this.sparkline();
  }

  sparkline() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr)), h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const ctx = c.getContext('2d');
    ctx.clearRect(0, 0, w, h);
    const xs = this.latencies;
    if (xs.length < 2) return;
    const top = Math.max(5, this.percentile(0.99) * 1.15);
    ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue('--spark').trim() || '#1f5fbf';
    ctx.lineWidth = 1.5 * dpr;
    ctx.beginPath();
    xs.forEach((v, i) => {
      const x = (i / (WINDOW - 1)) * w;
      const y = h - 2 * dpr - (Math.min(v, top) / top) * (h - 4 * dpr);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  // The view tests read (window.duplexDemo.panes[kind]).
  view() {
    const pane = this;
    return {
      get sub() { return pane.sub ?? null; },
      stats: () => pane.stats(),
      get lost() { return pane.check?.lost ?? 0; },
      get duplicated() { return pane.check?.duplicated ?? 0; },
      get gaps() { return pane.check?.gaps ?? 0; },
      get unannounced() { return pane.check?.unannounced ?? 0; },
      get offsets() { return pane.check?.offsets ?? []; },
      get epoch() { return pane.check?.epoch ?? null; },
      get state() { return pane.stateClass; },
      get latency() { return { last: pane.lastLatency, p50: pane.percentile(0.5), p99: pane.percentile(0.99) }; },
    };
  }
}

// SubscriptionPane receives the channel through duplex.js over one
// transport ('auto' lets the module choose).
class SubscriptionPane extends Pane {
  start(epoch, offset) {
    this.check = new OffsetCheck(epoch, offset);
    this.hub = connect('', { transport: this.kind, token: settings.token });
    this.sub = this.hub.subscribe([settings.channel], {
      message: (env) => this.received(env),
      gap: (g) => this.gap(g),
      state: (s) => this.onState(s),
      error: (e) => this.setState(`error: ${e.message}`, 'closed'),
    }, { cursor: `${settings.channel}:${epoch}:${offset}` });
    // Counters move without a message too (requests, bytes of heartbeats).
    this.ticker = setInterval(() => this.redraw(), 1000);
  }

  onState(s) {
    if (s.state === 'open') this.setState(`open · ${s.transport}`, 'open');
    else if (s.state === 'reconnecting') {
      const why = s.reason === 'offline' ? 'offline' : `attempt ${s.attempt}, ${formatMs(s.delay)}`;
      this.setState(`reconnecting · ${why}`, 'reconnecting');
    } else if (s.state === 'closed') this.setState(`closed${s.reason ? ' · ' + s.reason : ''}`, 'closed');
    else this.setState(s.state, 'connecting');
  }

  stats() {
    return this.sub ? this.sub.stats() : { transport: null, state: 'starting', messages: 0, bytes: 0, requests: 0, reconnects: 0, gaps: 0 };
  }

  cut() { this.sub?.cut(); }
}

// RestPane is the plain request/response client: GET
// /v1/channels/{c}/messages?after=N every interval, with the ETag of the
// last answer to the same URL in If-None-Match, so an idle channel costs a
// bodyless 304. A full page (limit messages) means more are waiting: it
// asks again at once.
class RestPane extends Pane {
  start(epoch, offset) {
    this.check = new OffsetCheck(epoch, offset);
    this.counts = { messages: 0, bytes: 0, requests: 0, reconnects: 0, gaps: 0, ok: 0, notModified: 0 };
    this.epoch = epoch;
    this.after = offset;
    this.etag = null; // of the answer to ?after=this.after
    this.failing = false;
    this.loop();
  }

  stats() {
    return { transport: 'rest', state: this.stateClass, ...this.counts };
  }

  async loop() {
    const limit = 100;
    for (;;) {
      this.abort = new AbortController();
      let full = false;
      try {
        full = (await this.once(limit, this.abort.signal)) === limit;
        if (this.failing) { this.failing = false; this.counts.reconnects++; }
        this.setState(`polling · every ${settings.interval} s`, 'open');
      } catch (err) {
        if (this.abort.signal.aborted) { this.setState('cut · polling again', 'reconnecting'); continue; }
        this.failing = true;
        this.setState(`reconnecting · ${err.message}`, 'reconnecting');
      }
      if (full) continue;
      await new Promise((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, this.failing ? 1000 : settings.interval * 1000);
      });
    }
  }

  // once makes one request and returns how many messages it brought.
  async once(limit, signal) {
    const headers = this.etag ? { 'If-None-Match': this.etag } : {};
    this.counts.requests++;
    const res = await fetch(hubURL(`/v1/channels/${encodeURIComponent(settings.channel)}/messages`,
      [['after', String(this.after)], ['limit', String(limit)]]), { headers, cache: 'no-store', signal });
    if (res.status === 304) { this.counts.notModified++; this.redraw(); return 0; }
    const text = await res.text();
    this.counts.bytes += text.length;
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    this.counts.ok++;
    const page = JSON.parse(text);
    if (this.epoch === '' && page.epoch !== '') {
      this.epoch = page.epoch; // the channel's first publish named its epoch
    } else if (page.epoch !== this.epoch) {
      // The channel started again (a hub without persistent history
      // restarted): everything of the old epoch after our position is gone.
      this.counts.gaps++;
      this.gap({ epoch: page.epoch, next: 1 });
      this.epoch = page.epoch;
      this.after = 0;
      this.etag = null;
      return limit; // ask again at once, from the new epoch's start
    }
    if (page.oldest > this.after + 1 && page.messages.length > 0) {
      this.counts.gaps++;
      this.gap({ epoch: page.epoch, next: page.oldest });
    }
    for (const env of page.messages) {
      this.counts.messages++;
      this.received(env);
    }
    if (page.next !== this.after) {
      this.after = page.next;
      this.etag = null;
    } else {
      this.etag = res.headers.get('ETag');
    }
    this.redraw();
    return page.messages.length;
  }

  // cut drops the request in flight, if any, and polls again at once.
  cut() {
    this.abort?.abort();
    this.counts.reconnects++;
    this.wake?.();
  }
}

async function channelInfo() {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(hubURL(`/v1/channels/${encodeURIComponent(settings.channel)}`), { cache: 'no-store' });
      const body = await res.json();
      if (!res.ok) throw new Error(body.error?.message || `HTTP ${res.status}`);
      return body;
    } catch (err) {
      say(`cannot read channel ${settings.channel}: ${err.message}; trying again`);
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
    }
  }
}

function parseJSON(text) {
  try { return { value: JSON.parse(text) }; } catch (e) { return { error: e.message }; }
}

function wireControls() {
  const form = document.getElementById('settings');
  form.channel.value = settings.channel;
  form.interval.value = String(settings.interval);
  if (settings.from !== 'now' && ![...form.from.options].some((o) => o.value === settings.from)) {
    form.from.append(new Option(`after offset ${settings.from}`, settings.from));
  }
  form.from.value = settings.from;
  const link = document.getElementById('permalink');
  const relink = () => { link.href = settingsURL(settings); };
  relink();
  // The polling interval changes in place; a channel or starting point is a
  // new view, so the page opens it (and its URL) afresh.
  form.interval.addEventListener('change', () => {
    const v = Number(form.interval.value);
    if (!(v >= 0.5 && v <= 60)) return;
    settings.interval = v;
    history.replaceState(null, '', settingsURL(settings));
    relink();
    panes.rest && say(`request/response polling every ${v} s`);
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    const next = { ...settings, channel: form.channel.value, interval: clamp(Number(form.interval.value) || 2, 0.5, 60), from: form.from.value };
    location.assign(settingsURL(next));
  });

  const pub = document.getElementById('publish');
  pub.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const parsed = parseJSON(pub.data.value);
    if (parsed.error) { say(`not JSON: ${parsed.error}`); return; }
    try {
      const p = await publisher.publish(settings.channel, parsed.value);
      say(`published offset ${p.offset}`);
    } catch (e) { say(`publish failed: ${e.message}`); }
  });

  const burst = document.getElementById('burst');
  burst.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!burst.reportValidity()) return;
    const n = Number(burst.count.value), rate = Number(burst.rate.value);
    const button = burst.querySelector('button');
    button.disabled = true;
    try { await runBurst(n, rate); } finally { button.disabled = false; }
  });
}

// runBurst publishes n messages at about rate per second, one after the
// other (so they take offsets in the order sent), and says how it went.
async function runBurst(n, rate) {
  const id = Math.random().toString(36).slice(2, 8);
  const start = performance.now();
  let failed = 0;
  for (let i = 1; i <= n; i++) {
    const due = start + ((i - 1) * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    try {
      await publisher.publish(settings.channel, { burst: id, n: i, of: n });
    } catch {
      failed++;
    }
    if (i % 25 === 0 || i === n) say(`burst ${id}: ${i}/${n} sent${failed ? `, ${failed} refused` : ''}`);
  }
  const secs = (performance.now() - start) / 1000;
  say(`burst ${id}: ${n - failed} of ${n} published in ${secs.toFixed(2)} s${failed ? ` (${failed} refused by the hub)` : ''}`);
  window.duplexDemo.bursts = (window.duplexDemo.bursts || 0) + 1;
}

async function main() {
  wireControls();
  for (const kind of settings.transports) {
    const pane = kind === 'rest' ? new RestPane(kind) : new SubscriptionPane(kind);
    panes[kind] = pane.view();
    pane.render();
    Pane.all = (Pane.all || []).concat(pane);
  }
  // The sparklines take their colour from the scheme: redraw on a switch.
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => Pane.all.forEach((p) => p.redraw()));
  // Every pane starts at the same position, so their offset checks are
  // exact from the first message on.
  const info = await channelInfo();
  const offset = settings.from === 'now' ? info.latest : Number(settings.from);
  for (const pane of Pane.all) pane.start(info.epoch, offset);
  window.duplexDemo.ready = true;
  say(`channel ${settings.channel}, epoch ${info.epoch}, from offset ${offset}`);
}

main();
