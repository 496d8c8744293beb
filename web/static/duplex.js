// duplex.js — the browser client of a duplex hub. No dependencies, no build
// step: the hub serves this file at /duplex.js and its types at /duplex.d.ts.
//
//   import { connect } from '/duplex.js';
//   const hub = connect('', { transport: 'auto' });      // '' = this page's origin
//   const sub = hub.subscribe(['chat'], {
//     message: (env) => console.log(env.channel, env.offset, env.data),
//     gap: (g) => console.warn('missed messages before', g.next),
//     state: (s) => console.log(s.state, s.transport || '', s.delay || ''),
//   });
//   await hub.publish('chat', { text: 'hi' });
//   sub.cursor();   // where to resume from, e.g. after a page reload
//   sub.close();
//
// The whole guide (every call, option and event) is docs/client.md,
// "Browser: duplex.js"; the wire is docs/protocol.md.
//
// Transports: 'ws' (WebSocket), 'sse' (EventSource), 'ndjson' (fetch of
// /v1/stream read as it arrives), 'poll' (long polling), and 'auto' (the
// default): WebSocket, then SSE, then NDJSON, then long polling. A transport
// that is refused (a status that says "not here", or a connection that never
// opens three times in a row), or that opens and then keeps dying (three
// connections in a row that delivered nothing and lived under 10 s), is
// given up for the next one, and the choice is remembered for the hub's
// life. Every reconnect resumes from the cursor of the last message handed
// to the caller, so nothing is lost or repeated; what the hub no longer has
// arrives as a gap notice.
//
// The pure parts — cursors, backoff, dedup, NDJSON line splitting — are
// exported functions, unit tested under Node (e2e/node/duplex.test.mjs).

export const ORDER = ['ws', 'sse', 'ndjson', 'poll'];

// A connection that lived this long worked, even if it delivered nothing.
const LIVED_MS = 10000;
// Consecutive failures of one transport before auto moves on.
const FAILURES_TO_FALL_BACK = 3;

// ---------------------------------------------------------------- pure logic

// What a close of an open WebSocket means (docs/protocol.md, "Closes").
// 'fatal': the hub will refuse the same subscription again (1008; a
// token-expiry 1008 is retried when the token is a function, see
// Subscription.ws). 'failed': this transport cannot carry it here (auto
// counts it towards falling back). 'resume': reconnect and resume from the
// cursor — 1001, 1011, 1013, and 1006, which the browser reports when the
// connection ended without a close frame: the hub cuts a slow consumer whose
// socket is full that way, because its 1013 frame cannot be written.
export function wsCloseAction(code) {
  if (code === 1008) return 'fatal';
  if ([1002, 1003, 1007, 1009].includes(code)) return 'failed';
  return 'resume';
}

// cursorText writes a cursor object {channel: {epoch, offset}} the way the
// hub does: entries sorted by channel name.
export function cursorText(cur) {
  return Object.keys(cur).sort().map((ch) => `${ch}:${cur[ch].epoch}:${cur[ch].offset}`).join(',');
}

// parseCursor reads "chan:epoch:offset,…" (each entry from the right, since
// channel names may hold ':'; the epoch may be empty), or copies an object
// of the same shape. It throws on anything else, naming the entry.
export function parseCursor(text) {
  const cur = {};
  if (!text) return cur;
  if (typeof text === 'object') {
    for (const [ch, pos] of Object.entries(text)) {
      const offset = Number(pos?.offset);
      if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`invalid cursor offset for ${ch}`);
      cur[ch] = { epoch: String(pos.epoch ?? ''), offset };
    }
    return cur;
  }
  for (const entry of String(text).split(',')) {
    const i = entry.lastIndexOf(':');
    const j = i > 0 ? entry.lastIndexOf(':', i - 1) : -1;
    if (i < 0 || j <= 0) throw new Error(`invalid cursor entry ${JSON.stringify(entry)}: want channel:epoch:offset`);
    const epoch = entry.slice(j + 1, i);
    const off = entry.slice(i + 1);
    if (!/^[a-z0-9]{0,16}$/.test(epoch)) throw new Error(`invalid cursor entry ${JSON.stringify(entry)}: bad epoch`);
    if (!/^[0-9]{1,20}$/.test(off)) throw new Error(`invalid cursor entry ${JSON.stringify(entry)}: bad offset`);
    const ch = entry.slice(0, j);
    if (ch in cur) throw new Error(`invalid cursor: channel ${ch} twice`);
    cur[ch] = { epoch, offset: Number(off) };
  }
  return cur;
}

// backoffDelay is full-jitter exponential backoff: a random delay in
// [0, min(cap, base·2^(attempt−1))) ms for attempt 1, 2, …, so that many
// clients cut at once do not come back at once.
export function backoffDelay(attempt, { base = 250, cap = 10000 } = {}, random = Math.random) {
  const n = Math.max(1, attempt) - 1;
  return random() * Math.min(cap, base * 2 ** Math.min(n, 30));
}

// acceptItem decides whether a message or gap goes to the caller, and moves
// the cursor cur (mutated) past it: each message once, in offset order per
// epoch. A message at or below the cursor of its epoch (an empty epoch in
// the cursor matches any) was delivered already; a gap that says nothing
// new (its next is just after the cursor) is dropped too.
export function acceptItem(cur, obj) {
  if (!obj || typeof obj.channel !== 'string') return false;
  const pos = cur[obj.channel];
  const sameEpoch = pos && (pos.epoch === '' || pos.epoch === obj.epoch);
  if (obj.type === 'message') {
    if (sameEpoch && obj.offset <= pos.offset) return false;
    cur[obj.channel] = { epoch: obj.epoch, offset: obj.offset };
    return true;
  }
  if (obj.type === 'gap') {
    if (sameEpoch && obj.next - 1 === pos.offset) return false;
    cur[obj.channel] = { epoch: obj.epoch, offset: obj.next - 1 };
    return true;
  }
  return false;
}

// createLineSplitter splits text arriving in arbitrary chunks into whole
// lines: push(chunk) returns the lines it completed ('\n' or '\r\n' ended,
// blank ones left out); flush() returns what was left without a newline.
export function createLineSplitter() {
  let rest = '';
  return {
    push(chunk) {
      const parts = (rest + chunk).split('\n');
      rest = parts.pop();
      return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)).filter((l) => l !== '');
    },
    flush() {
      const l = rest;
      rest = '';
      return l === '' ? [] : [l];
    },
  };
}

// parseNdjsonLine reads one NDJSON line: {value} when it is a JSON object,
// {error} otherwise. A bad line is reported, never fatal.
export function parseNdjsonLine(line) {
  try {
    const value = JSON.parse(line);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return { error: `not a JSON object: ${line.slice(0, 80)}` };
    return { value };
  } catch (e) {
    return { error: `malformed line (${e.message}): ${line.slice(0, 80)}` };
  }
}

// tokenExpiry returns a JWT's exp in ms, or 0 when it has none or is not a JWT.
export function tokenExpiry(token) {
  try {
    const b = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(b + '='.repeat((4 - (b.length % 4)) % 4))).exp;
    return typeof exp === 'number' ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

// refreshAt is when a token function is called again: 60 s before exp, or
// 10 % of the token's remaining life before it when that is shorter.
export function refreshAt(expMs, nowMs) {
  if (!expMs) return Infinity;
  return expMs - Math.min(60000, 0.1 * Math.max(0, expMs - nowMs));
}

function httpError(res, body, fallback) {
  return Object.assign(new Error(body?.error?.message || fallback || res.statusText || `HTTP ${res.status}`),
    { code: body?.error?.code, status: res.status });
}

// A status that says this transport is not served here: auto falls back at once.
const REFUSED = new Set([404, 405, 406, 501]);

// ---------------------------------------------------------------- hub

class Hub {
  constructor(base, opts = {}) {
    const origin = globalThis.location?.origin || '';
    this.base = (base || origin).replace(/\/$/, '');
    this.transport = opts.transport || 'auto';
    if (this.transport !== 'auto' && !ORDER.includes(this.transport)) throw new Error(`unknown transport ${this.transport}`);
    this.tokenSource = opts.token || '';
    this.backoff = { base: opts.backoff?.base ?? 250, cap: opts.backoff?.cap ?? 10000 };
    this.pollTimeout = opts.pollTimeout ?? 25;
    this.log = opts.log || (() => {});
    this.shared = !!opts.shared;
    this.working = null; // the transport auto settled on
    this.sockets = new Set(); // open WebSockets of this hub's subscriptions, for publish
    this.subs = new Set();
    this.tok = { value: '', exp: 0, at: Infinity, pending: null, timer: null };
    this.worker = null;
    this.closed = false;
  }

  // token returns the token to send now: the string, or the function's last
  // answer while it is fresh (force: ask again, after a 401 or 1008).
  async token(force = false) {
    const src = this.tokenSource;
    if (typeof src !== 'function') return src;
    const t = this.tok;
    if (!force && t.value && Date.now() < t.at) return t.value;
    if (!t.pending) {
      t.pending = (async () => {
        try {
          const v = String(await src());
          t.value = v;
          t.exp = tokenExpiry(v);
          t.at = refreshAt(t.exp, Date.now());
          this.scheduleRefresh();
          return v;
        } finally {
          t.pending = null;
        }
      })();
    }
    return t.pending;
  }

  // scheduleRefresh calls the token function again before exp while the
  // hub has subscriptions, so a reconnect never waits for it.
  scheduleRefresh() {
    clearTimeout(this.tok.timer);
    if (this.closed || !Number.isFinite(this.tok.at) || this.subs.size === 0) return;
    this.tok.timer = setTimeout(() => {
      if (this.closed || this.subs.size === 0) return;
      this.token(true).catch((e) => this.log(`token: ${e.message}`));
    }, Math.max(0, this.tok.at - Date.now()));
  }

  url(path, params, token) {
    const u = new URL(this.base + path);
    for (const [k, v] of params || []) u.searchParams.append(k, v);
    if (token) u.searchParams.set('token', token);
    return u;
  }

  // fetchJSON runs one request/response call, asking a token function
  // again and retrying once on 401.
  async fetchJSON(path, params, init, okStatus) {
    for (let retry = 0; ; retry++) {
      const res = await fetch(this.url(path, params, await this.token(retry > 0)), init);
      const body = await res.json().catch(() => null);
      if (res.status === 401 && retry === 0 && typeof this.tokenSource === 'function') continue;
      if (!okStatus(res.status)) throw httpError(res, body);
      return body;
    }
  }

  async publish(channel, data) {
    if (this.worker) return this.worker.call('publish', { channel, data });
    for (const s of this.sockets) {
      if (s.ws.readyState === 1) return s.publish(channel, data);
    }
    return this.fetchJSON(`/v1/channels/${encodeURIComponent(channel)}/messages`, null, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data),
    }, (s) => s === 201);
  }

  // history(channel, {after, limit}) or the older history(channel, after, limit).
  async history(channel, a, b) {
    let after = 0, limit = 100;
    if (a && typeof a === 'object') ({ after = 0, limit = 100 } = a);
    else { if (a !== undefined) after = a; if (b !== undefined) limit = b; }
    return this.fetchJSON(`/v1/channels/${encodeURIComponent(channel)}/messages`,
      [['after', after], ['limit', limit]], undefined, (s) => s >= 200 && s < 300);
  }

  // presence(channel) lists the channel's members; presenceStats(channel)
  // counts its clients and distinct users (docs/protocol.md, "Presence").
  async presence(channel) {
    return this.fetchJSON(`/v1/channels/${encodeURIComponent(channel)}/presence`,
      null, undefined, (s) => s === 200);
  }

  async presenceStats(channel) {
    return this.fetchJSON(`/v1/channels/${encodeURIComponent(channel)}/presence`,
      [['stats', '1']], undefined, (s) => s === 200);
  }

  subscribe(channels, handlers = {}, opts = {}) {
    if (this.closed) throw new Error('hub is closed');
    channels = [].concat(channels);
    // Joins and leaves are per subscription, so such a subscription keeps
    // its own connection rather than the worker's shared one.
    if (this.shared && !opts.joinLeave && opts.info === undefined) {
      const w = this.worker || (this.worker = SharedLink.open(this));
      if (w) return w.subscribe(channels, handlers, opts);
      this.shared = false; // no SharedWorker here: in-page
    }
    const s = new Subscription(this, channels, handlers, opts);
    this.subs.add(s);
    s.done.finally(() => { this.subs.delete(s); });
    return s;
  }

  close() {
    this.closed = true;
    clearTimeout(this.tok.timer);
    this.worker?.closeAll();
    return Promise.all([...this.subs].map((s) => s.close()));
  }
}

// A WebSocket of a subscription, which also carries the hub's publishes.
class Socket {
  constructor(ws) {
    this.ws = ws;
    this.pending = new Map();
    this.seq = 0;
  }

  publish(channel, data) {
    const id = `p${++this.seq}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, type: 'publish', channel, data }));
    });
  }

  // reply settles a publish; it returns false for anything else.
  reply(obj) {
    const p = typeof obj.id === 'string' && this.pending.get(obj.id);
    if (!p) return false;
    this.pending.delete(obj.id);
    if (obj.type === 'ok') p.resolve({ channel: obj.channel, epoch: obj.epoch, offset: obj.offset, time: obj.time });
    else p.reject(Object.assign(new Error(obj.message || 'publish failed'), { code: obj.code }));
    return true;
  }

  fail(why) {
    for (const p of this.pending.values()) p.reject(new Error(`WebSocket closed before the publish was answered: ${why}`));
    this.pending.clear();
  }
}

// ---------------------------------------------------------------- subscription

class Subscription {
  constructor(hub, channels, handlers, opts) {
    this.hub = hub;
    this.channels = channels;
    this.handlers = handlers;
    this.cur = parseCursor(opts.cursor || '');
    this.joinLeave = !!opts.joinLeave;
    this.info = opts.info;
    // A long poll names its presence member with client=, so that one
    // member lasts across polls (the hub makes up the other transports' ids).
    this.clientId = Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
    this.closed = false;
    this.transport = null; // the one in use now
    this.state = 'connecting';
    this.counts = { messages: 0, bytes: 0, requests: 0, reconnects: 0, gaps: 0 };
    this.conn = null; // {close(why)} of the connection now open
    this.wake = null; // ends the backoff wait now
    this.cutting = false;
    this.onWake = () => {
      if (globalThis.document && globalThis.document.visibilityState === 'hidden') return;
      this.wake?.();
    };
    globalThis.addEventListener?.('online', this.onWake);
    globalThis.document?.addEventListener?.('visibilitychange', this.onWake);
    this.done = this.run();
  }

  cursor() { return cursorText(this.cur); }

  stats() {
    return { transport: this.transport, state: this.state, ...this.counts };
  }

  cut() {
    if (this.closed) return;
    this.cutting = true;
    if (this.conn) this.conn.close('cut');
    else this.wake?.();
  }

  close() {
    if (!this.closed) {
      this.closed = true;
      this.conn?.close('closed');
      this.wake?.();
    }
    return this.done;
  }

  emit(state, extra = {}) {
    this.state = state;
    this.handlers.state?.({ state, transport: this.transport, ...extra });
  }

  deliver(obj) {
    if (obj && (obj.type === 'join' || obj.type === 'leave')) {
      // Not messages: no offset, the cursor stays (docs/protocol.md).
      this.handlers[obj.type]?.(obj);
      return true;
    }
    if (!acceptItem(this.cur, obj)) return false;
    if (obj.type === 'message') {
      this.counts.messages++;
      this.handlers.message?.(obj);
    } else {
      this.counts.gaps++;
      this.handlers.gap?.(obj);
    }
    return true;
  }

  // known records where "now" is for channels subscribed without a cursor,
  // from the hub's first answer, so a reconnect misses nothing in between.
  known(cur) {
    for (const [ch, pos] of Object.entries(cur)) {
      if (!this.cur[ch] && this.channels.includes(ch)) this.cur[ch] = pos;
    }
  }

  candidates() {
    const h = this.hub;
    if (h.transport !== 'auto') return [h.transport];
    if (h.working) return ORDER.slice(ORDER.indexOf(h.working));
    return ORDER;
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() { clearTimeout(t); resolve(); }
      this.wake = () => { this.wake = null; done(); };
    });
  }

  async waitOnline() {
    while (!this.closed && globalThis.navigator?.onLine === false) {
      this.emit('reconnecting', { attempt: this.attempt, delay: 0, reason: 'offline' });
      await this.sleep(60000); // woken by 'online'
    }
  }

  async run() {
    let failures = 0; // of the transport now tried, in a row
    let current = null; // the transport tried now, in candidates()
    this.attempt = 0;
    try {
      while (!this.closed) {
        const list = this.candidates();
        const index = Math.max(0, list.indexOf(current));
        const t = current = list[index];
        this.transport = t;
        this.handlers.transport?.(t);
        if (this.attempt === 0) this.emit('connecting');
        this.cutting = false;
        const started = Date.now();
        let r;
        try {
          r = await this[t]();
        } catch (err) {
          if (err.fatal) {
            this.handlers.error?.(err);
            this.transport = null;
            this.emit('closed', { reason: err.message });
            return;
          }
          this.hub.log(`${t}: ${err.message}`);
          r = { opened: false, delivered: 0, refused: !!err.refused };
        }
        this.conn = null;
        if (this.closed) break;
        const lived = Date.now() - started >= LIVED_MS;
        if (r.delivered > 0 || (r.opened && lived)) {
          failures = 0;
          this.attempt = 0;
          if (this.hub.transport === 'auto') this.hub.working = t;
        } else if (!this.cutting && (r.refused || ++failures >= FAILURES_TO_FALL_BACK) && index < list.length - 1) {
          current = list[index + 1]; // this transport is refused or keeps failing here: fall back
          failures = 0;
          this.hub.log(`${t}: giving up, trying ${current}`);
        }
        this.counts.reconnects++;
        this.attempt++;
        await this.waitOnline();
        if (this.closed) break;
        const delay = this.cutting ? 0 : Math.round(backoffDelay(this.attempt, this.hub.backoff));
        this.emit('reconnecting', { attempt: this.attempt, delay });
        if (delay > 0) await this.sleep(delay);
        this.wake = null;
      }
    } finally {
      globalThis.removeEventListener?.('online', this.onWake);
      globalThis.document?.removeEventListener?.('visibilitychange', this.onWake);
    }
    this.transport = null;
    this.emit('closed', { reason: 'closed by the caller' });
  }

  fatalOrRetry(err, status) {
    // A string token the hub refused will be refused again; a function may
    // give a fresh one.
    const tokenFn = typeof this.hub.tokenSource === 'function';
    if (status === 401 && tokenFn) { this.hub.token(true).catch(() => {}); return err; }
    err.fatal = status === 400 || status === 401 || status === 403;
    err.refused = REFUSED.has(status);
    return err;
  }

  // Each transport method runs one connection until it ends and returns
  // {opened, delivered, refused}. A thrown error with .fatal ends the
  // subscription; any other is a failed attempt.

  async ws() {
    const token = await this.hub.token();
    if (this.closed) return { opened: false, delivered: 0 };
    return new Promise((resolve, reject) => {
      const u = this.hub.url('/v1/ws', null, token);
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      const ws = new WebSocket(u, 'duplex.v1');
      const sock = new Socket(ws);
      this.counts.requests++;
      let delivered = 0, id = 0, opened = false;
      const subIds = new Map();
      this.conn = { close: () => ws.close(1000) };
      ws.onopen = () => {
        opened = true;
        this.hub.sockets.add(sock);
        this.emit('open');
        for (const ch of this.channels) {
          const cmd = { id: ++id, type: 'subscribe', channel: ch };
          subIds.set(id, ch);
          const pos = this.cur[ch];
          if (pos) { cmd.epoch = pos.epoch; cmd.offset = pos.offset; }
          if (this.joinLeave) cmd.join_leave = true;
          if (this.info !== undefined) cmd.info = this.info;
          ws.send(JSON.stringify(cmd));
        }
      };
      ws.onmessage = (ev) => {
        this.counts.bytes += ev.data.length;
        let obj;
        try { obj = JSON.parse(ev.data); } catch { this.hub.log(`ws: not JSON: ${String(ev.data).slice(0, 80)}`); return; }
        if (sock.reply(obj)) return;
        if (subIds.has(obj.id)) {
          const ch = subIds.get(obj.id);
          if (obj.type === 'ok') { this.known({ [ch]: { epoch: obj.epoch, offset: obj.offset } }); return; }
          const fatal = ['forbidden', 'unauthorized', 'invalid_channel', 'invalid_cursor', 'bad_request'].includes(obj.code);
          const err = Object.assign(new Error(obj.message || obj.code), { code: obj.code, fatal });
          ws.close(1000);
          reject(err);
          return;
        }
        if (['message', 'gap', 'join', 'leave'].includes(obj.type)) {
          if (this.deliver(obj)) delivered++;
        }
      };
      ws.onclose = (ev) => {
        this.hub.sockets.delete(sock);
        sock.fail(`${ev.code} ${ev.reason}`);
        this.handlers.disconnect?.({ transport: 'ws', code: ev.code, reason: ev.reason, clean: ev.wasClean });
        if (!opened) { reject(new Error(`WebSocket did not open (${ev.code})`)); return; }
        let action = wsCloseAction(ev.code);
        if (action === 'fatal' && /token/i.test(ev.reason) && typeof this.hub.tokenSource === 'function') {
          this.hub.token(true).catch(() => {}); // expired: come back with a fresh one
          action = 'resume';
        }
        if (action === 'fatal') {
          reject(Object.assign(new Error(`closed ${ev.code} ${ev.reason}`), { code: ev.code, fatal: true }));
          return;
        }
        resolve({ opened, delivered: action === 'failed' ? 0 : delivered });
      };
    });
  }

  streamParams() {
    const params = this.channels.map((ch) => ['channel', ch]);
    if (Object.keys(this.cur).length) params.push(['cursor', this.cursor()]);
    if (this.joinLeave) params.push(['join_leave', '1']);
    if (this.info !== undefined) params.push(['info', JSON.stringify(this.info)]);
    return params;
  }

  async sse() {
    const token = await this.hub.token();
    if (this.closed) return { opened: false, delivered: 0 };
    return new Promise((resolve, reject) => {
      const es = new EventSource(this.hub.url('/v1/sse', this.streamParams(), token));
      this.counts.requests++;
      let delivered = 0, opened = false;
      const finish = () => { es.close(); resolve({ opened, delivered }); };
      this.conn = { close: finish };
      es.onopen = () => { opened = true; this.emit('open'); };
      const on = (ev) => {
        this.counts.bytes += ev.data.length;
        const p = parseNdjsonLine(ev.data);
        if (p.error) { this.hub.log(`sse: ${p.error}`); return; }
        if (this.deliver(p.value)) delivered++;
      };
      es.addEventListener('message', on);
      es.addEventListener('gap', on);
      es.addEventListener('join', on);
      es.addEventListener('leave', on);
      // The browser would reconnect by itself with Last-Event-ID; we
      // reconnect ourselves instead, so fallback and backoff stay ours.
      es.onerror = () => {
        if (!opened) { es.close(); reject(new Error('EventSource did not open')); return; }
        finish();
      };
    });
  }

  async ndjson() {
    const token = await this.hub.token();
    if (this.closed) return { opened: false, delivered: 0 };
    const ac = new AbortController();
    this.conn = { close: () => ac.abort() };
    let delivered = 0, opened = false;
    let res;
    this.counts.requests++;
    try {
      res = await fetch(this.hub.url('/v1/stream', this.streamParams(), token), { signal: ac.signal, cache: 'no-store' });
    } catch (err) {
      if (ac.signal.aborted) return { opened, delivered };
      throw err;
    }
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw this.fatalOrRetry(httpError(res, body), res.status);
    }
    if (!/ndjson/.test(res.headers.get('Content-Type') || '')) {
      ac.abort();
      throw Object.assign(new Error(`/v1/stream answered ${res.headers.get('Content-Type')}`), { refused: true });
    }
    opened = true;
    this.emit('open');
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const lines = createLineSplitter();
    const handle = (line) => {
      const p = parseNdjsonLine(line);
      if (p.error) { this.hub.log(`ndjson: ${p.error}`); return; }
      const obj = p.value;
      if (obj.type === 'heartbeat') {
        if (typeof obj.cursor === 'string') { try { this.known(parseCursor(obj.cursor)); } catch (e) { this.hub.log(`ndjson: ${e.message}`); } }
        return;
      }
      if (this.deliver(obj)) delivered++;
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.counts.bytes += value.byteLength;
        for (const line of lines.push(decoder.decode(value, { stream: true }))) handle(line);
      }
      for (const line of lines.push(decoder.decode())) handle(line);
      for (const line of lines.flush()) handle(line);
    } catch (err) {
      if (!ac.signal.aborted) this.hub.log(`ndjson: ${err.message}`);
    }
    return { opened, delivered };
  }

  async poll() {
    let delivered = 0, opened = false;
    const ac = new AbortController();
    this.conn = { close: () => ac.abort() };
    while (!this.closed && !ac.signal.aborted) {
      const params = this.streamParams();
      params.push(['client', this.clientId]); // one presence member across polls
      // The first poll of a connection is answered at once (timeout=0): it
      // says the hub is there (state 'open'), and channels without a cursor
      // learn "now" from it.
      const now = !opened || this.channels.some((ch) => !this.cur[ch]);
      params.push(['timeout', now ? '0' : `${this.hub.pollTimeout}s`]);
      let res, text;
      this.counts.requests++;
      try {
        res = await fetch(this.hub.url('/v1/poll', params, await this.hub.token()), { signal: ac.signal, cache: 'no-store' });
        text = await res.text();
      } catch (err) {
        if (ac.signal.aborted) break;
        if (opened) break;
        throw err;
      }
      this.counts.bytes += text.length;
      let body = null;
      try { body = JSON.parse(text); } catch { /* reported below */ }
      if (!res.ok) throw this.fatalOrRetry(httpError(res, body), res.status);
      if (!body) throw new Error(`/v1/poll answered something that is not JSON: ${text.slice(0, 80)}`);
      if (!opened) { opened = true; this.emit('open'); }
      // Gaps first: within a channel the hub reports them before the messages they precede.
      for (const g of body.gaps || []) { if (this.deliver({ ...g, type: 'gap' })) delivered++; }
      for (const m of body.messages || []) if (this.deliver(m)) delivered++;
      if (typeof body.cursor === 'string') {
        try { Object.assign(this.cur, parseCursor(body.cursor)); } catch (e) { this.hub.log(`poll: ${e.message}`); }
      }
      delivered = Math.max(delivered, 1); // an answered poll is a working transport
    }
    return { opened, delivered };
  }
}

// ---------------------------------------------------------------- SharedWorker mode

// SharedLink is a page's side of duplex-worker.js: subscriptions and
// publishes are run by the worker, which keeps one hub connection per
// (base, transport, token) for every tab of the origin; the page keeps its
// own cursor and a copy of the worker's state and stats.
class SharedLink {
  static open(hub) {
    if (typeof SharedWorker === 'undefined') return null;
    try {
      const url = new URL('./duplex-worker.js', import.meta.url);
      if (globalThis.location && url.origin !== globalThis.location.origin) return null; // workers are same-origin only
      const w = new SharedWorker(url, { type: 'module', name: 'duplex' });
      return new SharedLink(hub, w.port);
    } catch (e) {
      hub.log(`SharedWorker unavailable, running in the page: ${e.message}`);
      return null;
    }
  }

  constructor(hub, port) {
    this.hub = hub;
    this.port = port;
    this.seq = 0;
    this.calls = new Map();
    this.subs = new Map();
    port.onmessage = (ev) => this.receive(ev.data);
    port.start();
    globalThis.addEventListener?.('pagehide', () => this.closeAll());
  }

  config() {
    const h = this.hub;
    return {
      base: h.base, transport: h.transport, backoff: h.backoff, pollTimeout: h.pollTimeout,
      token: typeof h.tokenSource === 'function' ? null : h.tokenSource,
      tokenFn: typeof h.tokenSource === 'function',
    };
  }

  call(op, args) {
    const rid = ++this.seq;
    return new Promise((resolve, reject) => {
      this.calls.set(rid, { resolve, reject });
      this.port.postMessage({ op, rid, hub: this.config(), ...args });
    });
  }

  async receive(m) {
    if (m.op === 'reply') {
      const c = this.calls.get(m.rid);
      this.calls.delete(m.rid);
      if (m.ok) c?.resolve(m.value); else c?.reject(Object.assign(new Error(m.error), { code: m.code }));
      return;
    }
    if (m.op === 'token') {
      try {
        this.port.postMessage({ op: 'token-reply', rid: m.rid, ok: true, token: await this.hub.token(m.force) });
      } catch (e) {
        this.port.postMessage({ op: 'token-reply', rid: m.rid, ok: false, error: e.message });
      }
      return;
    }
    if (m.op === 'event') this.subs.get(m.id)?.event(m);
  }

  subscribe(channels, handlers, opts) {
    const id = ++this.seq;
    const s = new SharedSubscription(this, id, channels, handlers, opts);
    this.subs.set(id, s);
    this.port.postMessage({ op: 'subscribe', id, hub: this.config(), channels, cursor: s.cursor() });
    return s;
  }

  closeAll() {
    for (const s of this.subs.values()) s.close();
  }
}

class SharedSubscription {
  constructor(link, id, channels, handlers, opts) {
    this.link = link;
    this.id = id;
    this.channels = channels;
    this.handlers = handlers;
    this.cur = parseCursor(opts.cursor || '');
    this.transport = null;
    this.state = 'connecting';
    this.counts = { messages: 0, bytes: 0, requests: 0, reconnects: 0, gaps: 0 };
    this.closed = false;
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
  }

  event(m) {
    if (m.stats) { this.counts = m.stats; this.transport = m.stats.transport; this.state = m.stats.state; }
    const v = m.value;
    switch (m.kind) {
      case 'message':
      case 'gap':
        if (acceptItem(this.cur, v)) this.handlers[m.kind]?.(v);
        break;
      case 'state':
        this.handlers.state?.(v);
        if (v.state === 'closed') this.finish();
        break;
      case 'transport': this.handlers.transport?.(v); break;
      case 'disconnect': this.handlers.disconnect?.(v); break;
      case 'error': this.handlers.error?.(Object.assign(new Error(v.message), v)); break;
    }
  }

  cursor() { return cursorText(this.cur); }
  stats() { return { ...this.counts, transport: this.transport, state: this.state }; }
  cut() { this.link.port.postMessage({ op: 'cut', id: this.id }); }

  close() {
    if (!this.closed) {
      this.closed = true;
      this.link.port.postMessage({ op: 'close', id: this.id });
      this.transport = null;
      this.state = 'closed';
      this.handlers.state?.({ state: 'closed', transport: null, reason: 'closed by the caller' });
      this.finish();
    }
    return this.done;
  }

  finish() {
    this.link.subs.delete(this.id);
    this.resolveDone();
  }
}

export function connect(base, opts) {
  return new Hub(base, opts);
}
