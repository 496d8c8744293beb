// ws_deflate.js URL CHANNEL N: opens duplex's /v1/ws with the npm `ws`
// client offering permessage-deflate (its default, asked for explicitly
// here), subscribes to CHANNEL, publishes N messages of about 2 KiB (which
// ws compresses: its threshold is 1 KiB) and prints one JSON object: the
// extension the hub agreed to and the data of the N messages it got back.
'use strict';
const WebSocket = require('ws');

const [url, channel, nText] = process.argv.slice(2);
const n = Number(nText);
const report = { extensions: null, messages: [] };
const ws = new WebSocket(url, ['duplex.v1'], { perMessageDeflate: { threshold: 1024 } });
const timer = setTimeout(() => { report.timeout = true; done(2); }, 30000);
function done(code) {
  clearTimeout(timer);
  console.log(JSON.stringify(report));
  process.exit(code);
}
ws.on('upgrade', (res) => { report.extensions = res.headers['sec-websocket-extensions'] || ''; });
ws.on('open', () => ws.send(JSON.stringify({ id: 1, type: 'subscribe', channel })));
ws.on('message', (b) => {
  const f = JSON.parse(b.toString());
  if (f.type === 'ok' && f.id === 1) {
    for (let i = 1; i <= n; i++) {
      ws.send(JSON.stringify({ id: 'p' + i, type: 'publish', channel, data: { n: i, text: 'ünïcødé '.repeat(200) } }));
    }
  } else if (f.type === 'message') {
    report.messages.push(f.data);
    if (report.messages.length === n) ws.close(1000);
  }
});
ws.on('close', () => done(0));
ws.on('error', (e) => { report.error = String(e); done(1); });
