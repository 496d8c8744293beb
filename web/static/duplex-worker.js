// duplex-worker.js — the SharedWorker behind connect(base, { shared: true }).
//
// Every tab of an origin that asks for shared mode talks to this one worker
// (a module SharedWorker named 'duplex'). The worker keeps one Hub per
// (base, transport, token) and one hub connection per set of channels on
// it, and fans each message out to every tab subscribed, each through its
// own cursor, so ten tabs hold one of the browser's six HTTP/1.1
// connections per origin instead of ten. A tab's subscription that joins
// a connection already running starts where that connection is; the
// connection itself was opened with the first tab's cursor.
//
// A token function cannot cross to a worker: the worker asks the tab that
// opened the hub (or, if it has gone, any tab of that hub) to call it.
//
// Messages, tab → worker: subscribe {id, hub, channels, cursor}, cut {id},
// close {id}, publish {rid, hub, channel, data}, token-reply {rid, ok,
// token|error}. Worker → tab: event {id, kind, value, stats}, reply {rid,
// ok, value|error, code}, token {rid, force}.
import { connect, cursorText, parseCursor, acceptItem } from './duplex.js';

const hubs = new Map(); // hub key → {hub, ports: Set, conns: Map(channels key → conn)}
const members = new Map(); // `${portNo}:${id}` → {port, id, conn, cur}
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
    e = { key, ports: new Set(), conns: new Map() };
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

function send(m, kind, value) {
  m.port.postMessage({ op: 'event', id: m.id, kind, value, stats: m.conn.sub.stats() });
}

function subscribe(port, m) {
  const e = hubFor(port, m.hub);
  const chKey = JSON.stringify([...m.channels].sort());
  let conn = e.conns.get(chKey);
  if (!conn) {
    conn = { members: new Set() };
    const fan = (kind) => (v) => {
      for (const mem of conn.members) {
        if (kind === 'message' || kind === 'gap') {
          if (acceptItem(mem.cur, v)) send(mem, kind, v);
        } else if (kind === 'error') {
          send(mem, kind, { message: v.message, code: v.code });
        } else {
          send(mem, kind, v);
        }
      }
    };
    conn.sub = e.hub.subscribe(m.channels, {
      message: fan('message'), gap: fan('gap'), state: fan('state'), transport: fan('transport'),
      disconnect: fan('disconnect'), error: fan('error'),
    }, { cursor: m.cursor });
    e.conns.set(chKey, conn);
    conn.sub.done.finally(() => { if (e.conns.get(chKey) === conn) e.conns.delete(chKey); });
  }
  const mem = { port, id: m.id, conn, e, cur: parseCursor(m.cursor || '') };
  // A tab joining a running connection starts where the connection is.
  for (const [ch, pos] of Object.entries(conn.sub.cur)) if (!mem.cur[ch]) mem.cur[ch] = pos;
  conn.members.add(mem);
  members.set(`${port.no}:${m.id}`, mem);
  send(mem, 'state', { state: conn.sub.state, transport: conn.sub.transport, cursor: cursorText(mem.cur) });
}

function leave(port, id) {
  const k = `${port.no}:${id}`;
  const mem = members.get(k);
  if (!mem) return;
  members.delete(k);
  const conn = mem.conn;
  conn.members.delete(mem);
  if (conn.members.size === 0) conn.sub.close();
  if (![...members.values()].some((o) => o.port === port && o.e === mem.e)) mem.e.ports.delete(port);
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
      case 'cut': members.get(`${port.no}:${m.id}`)?.conn.sub.cut(); break;
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
