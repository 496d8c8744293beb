// duplex-worker.js — the SharedWorker behind connect(base, { shared: true }).
//
// Every tab of an origin that asks for shared mode talks to this one worker
// (a module SharedWorker named 'duplex'). The worker keeps one Hub, and one
// hub connection, per (base, transport, token), subscribed to the union of
// the channels its tabs asked for, and fans each message out to every tab
// subscribed to its channel, each through its own cursor: ten tabs hold
// one of the browser's six HTTP/1.1 connections per origin instead of ten.
//
// A tab that joins with channels the connection lacks, or with a cursor
// behind it on a channel (same epoch), makes the worker open the
// connection again from the merged cursor (then drop the old one); the
// tabs already there drop the replay through their own cursors. A tab
// without a cursor for a channel starts where the connection is.
//
// A token function cannot cross to a worker: the worker asks the tab that
// opened the hub (or, if it has gone, any tab of that hub) to call it.
//
// Messages, tab → worker: subscribe {id, hub, channels, cursor}, cut {id},
// close {id}, publish {rid, hub, channel, data}, token-reply {rid, ok,
// token|error}. Worker → tab: event {id, kind, value, stats}, reply {rid,
// ok, value|error, code}, token {rid, force}.
import { connect, cursorText, parseCursor, acceptItem } from './duplex.js';

const hubs = new Map(); // hub key → {hub, ports: Set, members: Set, sub, channels}
const members = new Map(); // `${port.no}:${id}` → {port, id, e, channels, cur}
const tokenCalls = new Map();
let seq = 0;
let portNo = 0;

function hubKey(c) {
  return JSON.stringify([c.base, c.transport, c.tokenFn ? 'function' : c.token || '']);
}

function hubFor(port, c) {
  const key = hubKey(c);
  let e = hubs.get(key);
  if (!e) {
    e = { key, ports: new Set(), members: new Set(), sub: null, channels: [] };
    const token = c.tokenFn ? () => askToken(e) : c.token || '';
    e.hub = connect(c.base, { transport: c.transport, token, backoff: c.backoff, pollTimeout: c.pollTimeout });
    hubs.set(key, e);
  }
  e.ports.add(port);
  return e;
}

function askToken(e) {
  const port = [...e.ports][0];
  if (!port) return Promise.reject(new Error('no tab left to ask for a token'));
  const rid = ++seq;
  return new Promise((resolve, reject) => {
    tokenCalls.set(rid, { resolve, reject });
    port.postMessage({ op: 'token', rid, force: true }); // the worker asks only when it needs a new one
  });
}

function send(mem, kind, value) {
  mem.port.postMessage({ op: 'event', id: mem.id, kind, value, stats: mem.e.sub?.stats() });
}

// fanOut makes the handlers of one connection of e; events of a
// connection that has been replaced are dropped.
function fanOut(e, self) {
  const each = (kind) => (v) => {
    if (e.sub !== self.sub) return;
    for (const mem of e.members) {
      if (kind === 'message' || kind === 'gap') {
        if (!mem.channels.includes(v.channel)) continue;
        const pos = mem.cur[v.channel];
        // A gap of a replay another tab asked for, behind this tab: old news here.
        if (kind === 'gap' && pos && pos.epoch === v.epoch && v.next - 1 < pos.offset) continue;
        if (acceptItem(mem.cur, v)) send(mem, kind, v);
      } else if (kind === 'error') {
        send(mem, kind, { message: v.message, code: v.code });
      } else {
        send(mem, kind, v);
      }
    }
  };
  return {
    message: each('message'), gap: each('gap'), state: each('state'), transport: each('transport'),
    disconnect: each('disconnect'), error: each('error'),
  };
}

// connectionFor makes sure e's connection carries mem's channels from
// mem's cursor on, opening it again from a merged cursor when it does not.
function connectionFor(e, mem) {
  const cur = e.sub ? { ...e.sub.cur } : {};
  let again = !e.sub || mem.channels.some((ch) => !e.channels.includes(ch));
  for (const [ch, pos] of Object.entries(mem.cur)) {
    const at = cur[ch];
    if (!at) { cur[ch] = pos; again = true; } else if ((pos.epoch === '' || pos.epoch === at.epoch) && pos.offset < at.offset) {
      cur[ch] = { epoch: at.epoch, offset: pos.offset };
      again = true;
    }
  }
  // Where the connection already is, a tab without a cursor starts there
  // (this one, and those before it, before a replay for this one). One
  // that joined before the connection learnt where "now" is may get that
  // replay too.
  for (const o of e.members) {
    for (const ch of o.channels) if (!o.cur[ch] && e.sub?.cur[ch]) o.cur[ch] = { ...e.sub.cur[ch] };
  }
  if (!again) return;
  const channels = [...new Set([...e.channels, ...mem.channels])].sort();
  const cursor = {};
  for (const ch of channels) if (cur[ch]) cursor[ch] = cur[ch];
  const old = e.sub;
  const self = {};
  e.channels = channels;
  e.sub = self.sub = e.hub.subscribe(channels, fanOut(e, self), { cursor });
  old?.close();
}

function subscribe(port, m) {
  const e = hubFor(port, m.hub);
  const mem = { port, id: m.id, e, channels: [...m.channels], cur: parseCursor(m.cursor || '') };
  e.members.add(mem);
  members.set(`${port.no}:${m.id}`, mem);
  connectionFor(e, mem);
  send(mem, 'state', { state: e.sub.state, transport: e.sub.transport, cursor: cursorText(mem.cur) });
}

function leave(port, id) {
  const k = `${port.no}:${id}`;
  const mem = members.get(k);
  if (!mem) return;
  members.delete(k);
  const e = mem.e;
  e.members.delete(mem);
  if (![...e.members].some((o) => o.port === port)) e.ports.delete(port);
  if (e.members.size === 0) {
    e.sub?.close();
    e.sub = null;
    e.channels = [];
  }
}

async function reply(port, rid, work) {
  try {
    port.postMessage({ op: 'reply', rid, ok: true, value: await work() });
  } catch (err) {
    port.postMessage({ op: 'reply', rid, ok: false, error: err.message, code: err.code });
  }
}

globalThis.onconnect = (ev) => {
  const port = ev.ports[0];
  port.no = ++portNo;
  port.onmessage = (msg) => {
    const m = msg.data;
    switch (m.op) {
      case 'subscribe': subscribe(port, m); break;
      case 'close': leave(port, m.id); break;
      case 'cut': members.get(`${port.no}:${m.id}`)?.e.sub?.cut(); break;
      case 'publish': reply(port, m.rid, () => hubFor(port, m.hub).hub.publish(m.channel, m.data)); break;
      case 'token-reply': {
        const c = tokenCalls.get(m.rid);
        tokenCalls.delete(m.rid);
        if (m.ok) c?.resolve(m.token); else c?.reject(new Error(m.error));
        break;
      }
    }
  };
  port.start();
};
