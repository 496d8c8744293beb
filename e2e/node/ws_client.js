// ws_client.js URL CHANNEL PRE: drives duplex's /v1/ws with the npm `ws`
// client and prints what it saw as one JSON object. The Go test
// (e2e/ws_peers_test.go) starts the hub, publishes PRE messages first, and
// checks the report.
//
// On one connection it: subscribes from offset 0 (a cursor with an empty
// epoch), publishes 20 messages back to back while the replay and its own
// messages arrive, asks for history, unsubscribes, pings, and sends a
// command of an unknown type.
'use strict';
const WebSocket = require('ws');

const [url, channel, preText] = process.argv.slice(2);
const pre = Number(preText);
const N = 20;
const report = {
  protocol: null, subscribe: null, publishes: [], messages: [], history: null,
  unsubscribe: null, pong: null, unknown: null, order: [], close: null,
};
const ws = new WebSocket(url, ['duplex.v1']);
const send = (o) => ws.send(JSON.stringify(o));
let phase = 'subscribing';

const timer = setTimeout(() => {
  report.timeout = phase;
  console.log(JSON.stringify(report));
  process.exit(2);
}, 30000);

ws.on('open', () => {
  report.protocol = ws.protocol;
  send({ id: 1, type: 'subscribe', channel, offset: 0 });
});

ws.on('message', (data, isBinary) => {
  if (isBinary) throw new Error('binary frame from the hub');
  const f = JSON.parse(data.toString('utf8'));
  report.order.push(f.type + (f.id !== undefined ? ':' + f.id : ''));
  switch (phase) {
    case 'subscribing':
      if (f.type !== 'ok' || f.id !== 1) throw new Error('want subscribe ok first, got ' + data);
      report.subscribe = f;
      phase = 'publishing';
      // Back to back, without waiting: replies and messages interleave.
      for (let i = 1; i <= N; i++) send({ id: 'p' + i, type: 'publish', channel, data: { n: i, s: 'ünïcødé' } });
      return;
    case 'publishing':
      if (f.type === 'message') report.messages.push({ offset: f.offset, data: f.data, epoch: f.epoch });
      else if (f.type === 'ok') report.publishes.push({ id: f.id, offset: f.offset, epoch: f.epoch, time: f.time });
      else throw new Error('unexpected ' + data);
      if (report.messages.length === pre + N && report.publishes.length === N) {
        phase = 'history';
        send({ id: 'h', type: 'history', channel, after: pre, limit: 5 });
      }
      return;
    case 'history':
      report.history = { id: f.id, type: f.type, offsets: (f.messages || []).map((m) => m.offset), next: f.next };
      phase = 'unsubscribe';
      send({ id: 'u', type: 'unsubscribe', channel });
      return;
    case 'unsubscribe':
      report.unsubscribe = f;
      phase = 'ping';
      send({ id: 'x', type: 'ping' });
      return;
    case 'ping':
      report.pong = f;
      phase = 'unknown';
      send({ id: 99, type: 'dance' });
      return;
    case 'unknown':
      report.unknown = f;
      phase = 'closing';
      ws.close(1000, 'done');
      return;
    default:
      throw new Error('frame after the end: ' + data);
  }
});

ws.on('close', (code, reason) => {
  clearTimeout(timer);
  report.close = { code, reason: reason.toString() };
  console.log(JSON.stringify(report));
});
ws.on('error', (err) => {
  clearTimeout(timer);
  report.error = String(err);
  console.log(JSON.stringify(report));
  process.exit(1);
});
