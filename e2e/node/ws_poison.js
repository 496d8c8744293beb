// ws_poison.js URL CHANNEL: an npm `ws` subscriber that must survive
// attempts to poison its channel (e2e/ws_poison_test.go). It subscribes
// from offset 0 and prints {"ready":true}; the Go test then publishes
// invalid UTF-8 and a lone surrogate over HTTP (refused) and one good
// message. On that message it publishes a lone surrogate itself (an error
// reply), reads the channel's history, closes with 1000 and prints what it
// saw as one JSON object.
'use strict';
const WebSocket = require('ws');

const [url, channel] = process.argv.slice(2);
const report = { messages: [], poison: null, history: null, close: null };
const ws = new WebSocket(url, ['duplex.v1']);
const timer = setTimeout(() => {
  report.timeout = true;
  console.log(JSON.stringify(report));
  process.exit(2);
}, 30000);

ws.on('message', (data, isBinary) => {
  if (isBinary) throw new Error('binary frame from the hub');
  const f = JSON.parse(data.toString('utf8'));
  if (f.id === 1) {
    console.log(JSON.stringify({ ready: true }));
  } else if (f.type === 'message') {
    report.messages.push({ offset: f.offset, data: f.data });
    // Written by hand: the JSON text holds the escape \ud800, alone.
    ws.send('{"id":2,"type":"publish","channel":' + JSON.stringify(channel) + ',"data":{"a":"\\ud800"}}');
  } else if (f.id === 2) {
    report.poison = { type: f.type, code: f.code, message: f.message };
    ws.send(JSON.stringify({ id: 3, type: 'history', channel, after: 0 }));
  } else if (f.id === 3) {
    report.history = f.messages.map((m) => ({ offset: m.offset, data: m.data }));
    ws.close(1000, 'done');
  }
});
ws.on('open', () => ws.send(JSON.stringify({ id: 1, type: 'subscribe', channel, offset: 0 })));
ws.on('close', (code) => {
  clearTimeout(timer);
  report.close = { code };
  console.log(JSON.stringify(report));
});
ws.on('error', (err) => {
  clearTimeout(timer);
  report.error = String(err);
  console.log(JSON.stringify(report));
  process.exit(1);
});
