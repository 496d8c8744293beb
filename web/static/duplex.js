// duplex.js — the browser client of a duplex hub.
//
//   import { connect } from '/duplex.js';
//   const hub = connect('', { transport: 'auto' });      // '' = this page's origin
//   const sub = hub.subscribe(['chat'], {
//     message: (env) => console.log(env.channel, env.offset, env.data),
//     gap: (g) => console.warn('missed messages before', g.next),
//   });
//   await hub.publish('chat', { text: 'hi' });
//   sub.cursor();   // where to resume from, e.g. after a page reload
//   sub.close();
//
// Transports: 'ws' (WebSocket), 'sse' (EventSource), 'poll' (long polling),
// and 'auto' (the default): WebSocket first, then SSE, then long polling. A
// transport that fails to open, or opens and then keeps dying (three times
// in a row without delivering anything), is given up for the next one, and
// the choice is remembered for the page's life. Every reconnect resumes from
// the cursor of the last message handed to the caller, so nothing is lost or
// repeated; what the hub no longer has arrives as a gap notice.
//
// WebSocket closes (wsCloseAction): 1001, 1011, 1013 (slow consumer) and
// 1006 (the connection ended without a close frame, as when the hub cuts a
// page whose main thread was busy long enough for its socket to fill) are
// reconnected from the cursor; 1008 (token expired, origin, limits) ends
// the subscription with handlers.error. handlers.disconnect, if given, is
// told of every WebSocket close: { transport, code, reason, clean }.
//
// Auth: pass { token } — sent as token= on every request, since browsers
// cannot set headers on WebSocket and EventSource.

const ORDER = ['ws', 'sse', 'poll'];

// What a close of an open WebSocket means (docs/protocol.md, "Closes").
// 'fatal': the hub will refuse the same subscription again. 'failed': this
// transport cannot carry it here (auto counts it towards falling back).
// 'resume': reconnect and resume from the cursor — 1001, 1011, 1013, and
// 1006, which the browser reports when the connection ended without a
// close frame: the hub cuts a slow consumer whose socket is full that way,
// because its 1013 frame cannot be written.
function wsCloseAction(code) {
  if (code === 1008) return 'fatal';
  if ([1002, 1003, 1007, 1009].includes(code)) return 'failed';
  return 'resume';
}

function cursorText(cur) {
  return Object.keys(cur).sort().map((ch) => `${ch}:${cur[ch].epoch}:${cur[ch].offset}`).join(',');
}

function parseCursor(text) {
  const cur = {};
  if (!text) return cur;
  for (const entry of text.split(',')) {
    const i = entry.lastIndexOf(':');
    const j = entry.lastIndexOf(':', i - 1);
    if (i < 0 || j < 0) throw new Error(`invalid cursor entry ${entry}`);
    cur[entry.slice(0, j)] = { epoch: entry.slice(j + 1, i), offset: Number(entry.slice(i + 1)) };
  }
  return cur;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// Full-jitter exponential backoff: a random delay up to min(cap, base·2^n).
function backoff(n) {
  return Math.random() * Math.min(10000, 250 * 2 ** n);
}

class Hub {
  constructor(base, opts = {}) {
    this.base = (base || location.origin).replace(/\/$/, '');
    this.transport = opts.transport || 'auto';
    this.token = opts.token || '';
    this.working = null; // the transport auto settled on
    this.log = opts.log || (() => {});
  }

  url(path, params) {
    const u = new URL(this.base + path);
    for (const [k, v] of params || []) u.searchParams.append(k, v);
    if (this.token) u.searchParams.set('token', this.token);
    return u;
  }

  async publish(channel, data) {
    const res = await fetch(this.url(`/v1/channels/${encodeURIComponent(channel)}/messages`), {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data),
    });
    const body = await res.json();
    if (res.status !== 201) throw Object.assign(new Error(body.error?.message || res.statusText), { code: body.error?.code, status: res.status });
    return body;
  }

  async history(channel, after = 0, limit = 100) {
    const res = await fetch(this.url(`/v1/channels/${encodeURIComponent(channel)}/messages`, [['after', after], ['limit', limit]]));
    const body = await res.json();
    if (!res.ok) throw Object.assign(new Error(body.error?.message || res.statusText), { code: body.error?.code, status: res.status });
    return body;
  }

  subscribe(channels, handlers = {}, opts = {}) {
    return new Subscription(this, [].concat(channels), handlers, opts);
  }
}

class Subscription {
  constructor(hub, channels, handlers, opts) {
    this.hub = hub;
    this.channels = channels;
    this.handlers = handlers;
    this.cur = parseCursor(opts.cursor || '');
    this.abort = new AbortController();
    this.transport = null; // the one in use now
    this.done = this.run();
  }

  cursor() { return cursorText(this.cur); }

  close() { this.abort.abort(); this.closeConn?.(); return this.done; }

  // deliver hands an envelope or gap to the caller once, in order, and moves
  // the cursor past it.
  deliver(obj) {
    const pos = this.cur[obj.channel];
    if (obj.type === 'message') {
      if (pos && pos.epoch === obj.epoch && obj.offset <= pos.offset) return false; // already had it
      this.cur[obj.channel] = { epoch: obj.epoch, offset: obj.offset };
      this.handlers.message?.(obj);
      return true;
    }
    if (obj.type === 'gap') {
      this.cur[obj.channel] = { epoch: obj.epoch, offset: obj.next - 1 };
      this.handlers.gap?.(obj);
      return true;
    }
    return false;
  }

  candidates() {
    const h = this.hub;
    if (h.transport !== 'auto') return [h.transport];
    if (h.working) return ORDER.slice(ORDER.indexOf(h.working));
    return ORDER;
  }

  async run() {
    const signal = this.abort.signal;
    let failures = 0; // in a row, without delivering anything
    let index = 0;
    while (!signal.aborted) {
      const list = this.candidates();
      const t = list[Math.min(index, list.length - 1)];
      this.transport = t;
      this.handlers.transport?.(t);
      let delivered = 0;
      try {
        delivered = await this[t]();
      } catch (err) {
        if (err.fatal) { this.handlers.error?.(err); return; }
        this.hub.log(`${t}: ${err.message}`);
      }
      if (signal.aborted) return;
      if (delivered > 0) {
        failures = 0;
        if (this.hub.transport === 'auto') this.hub.working = t;
      } else if (++failures >= 3 && index < list.length - 1) {
        index++; // this transport keeps failing here: fall back
        failures = 0;
        continue;
      }
      await sleep(backoff(failures), signal);
    }
  }

  // Each transport method runs one connection until it ends, and returns how
  // many items it delivered. A thrown error with .fatal stops the subscription.

  ws() {
    return new Promise((resolve, reject) => {
      const u = this.hub.url('/v1/ws');
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      const ws = new WebSocket(u, 'duplex.v1');
      let delivered = 0, id = 0, opened = false;
      this.closeConn = () => ws.close(1000);
      ws.onopen = () => {
        opened = true;
        for (const ch of this.channels) {
          const cmd = { id: ++id, type: 'subscribe', channel: ch };
          const pos = this.cur[ch];
          if (pos) { cmd.epoch = pos.epoch; cmd.offset = pos.offset; }
          ws.send(JSON.stringify(cmd));
        }
      };
      ws.onmessage = (ev) => {
        const obj = JSON.parse(ev.data);
        if (obj.type === 'error') {
          const err = Object.assign(new Error(obj.message), { code: obj.code, fatal: obj.code === 'forbidden' || obj.code === 'unauthorized' || obj.code === 'invalid_channel' });
          if (err.fatal) { ws.close(1000); reject(err); }
          return;
        }
        if (this.deliver(obj)) delivered++;
      };
      ws.onclose = (ev) => {
        this.handlers.disconnect?.({ transport: 'ws', code: ev.code, reason: ev.reason, clean: ev.wasClean });
        if (!opened) { reject(new Error(`WebSocket refused (${ev.code})`)); return; }
        const action = wsCloseAction(ev.code);
        if (action !== 'resume') {
          reject(Object.assign(new Error(`closed ${ev.code} ${ev.reason}`), { code: ev.code, fatal: action === 'fatal' }));
          return;
        }
        resolve(delivered);
      };
    });
  }

  sse() {
    return new Promise((resolve, reject) => {
      const params = this.channels.map((ch) => ['channel', ch]);
      if (Object.keys(this.cur).length) params.push(['cursor', this.cursor()]);
      const es = new EventSource(this.hub.url('/v1/sse', params));
      let delivered = 0, opened = false;
      const finish = () => { es.close(); resolve(delivered); };
      this.closeConn = finish;
      es.onopen = () => { opened = true; };
      const on = (ev) => { if (this.deliver(JSON.parse(ev.data))) delivered++; };
      es.addEventListener('message', on);
      es.addEventListener('gap', on);
      // The browser would reconnect by itself with Last-Event-ID; we
      // reconnect ourselves instead, so fallback and backoff stay ours.
      es.onerror = () => {
        if (!opened) { es.close(); reject(new Error('EventSource refused')); return; }
        finish();
      };
    });
  }

  async poll() {
    let delivered = 0;
    const signal = this.abort.signal;
    this.closeConn = null;
    let cursor = Object.keys(this.cur).length ? this.cursor() : '';
    while (!signal.aborted) {
      const params = this.channels.map((ch) => ['channel', ch]);
      if (cursor) params.push(['cursor', cursor]);
      params.push(['timeout', '25s']);
      let res;
      try {
        res = await fetch(this.hub.url('/v1/poll', params), { signal });
      } catch (err) {
        if (signal.aborted) return delivered;
        if (delivered === 0) throw err;
        return delivered;
      }
      const body = await res.json();
      if (!res.ok) {
        throw Object.assign(new Error(body.error?.message || res.statusText), { code: body.error?.code, fatal: res.status === 400 || res.status === 401 || res.status === 403 });
      }
      // Gaps first per channel: the hub reports them before the messages they precede.
      for (const g of body.gaps || []) { g.type = 'gap'; if (this.deliver(g)) delivered++; }
      for (const m of body.messages || []) if (this.deliver(m)) delivered++;
      cursor = body.cursor;
      this.cur = parseCursor(cursor);
      if (delivered === 0) delivered = 1; // an answered poll is a working transport
    }
    return delivered;
  }
}

export function connect(base, opts) {
  return new Hub(base, opts);
}

export { parseCursor, cursorText, wsCloseAction };
