// ws_deflate_browser.js URL CHANNEL N: the browser's own WebSocket, in
// Debian's chromium, against duplex's /v1/ws at URL (ws://…): it offers
// permessage-deflate as every browser does; the page subscribes to
// CHANNEL, publishes N messages of about 2 KiB and prints the same report
// as ws_deflate.js: the extension agreed (WebSocket.extensions) and the
// data of the N messages it got back.
'use strict';
const chromium = require('./browser');

const [url, channel, nText] = process.argv.slice(2);
const page0 = url.replace(/^ws/, 'http').replace(/\/v1\/ws$/, '/');

(async () => {
  const browser = await chromium.launch();
  try {
    const page = await browser.newPage();
    await page.goto(page0); // a page of the hub's origin
    const report = await page.evaluate(([u, ch, n]) => new Promise((resolve, reject) => {
      const report = { extensions: null, messages: [] };
      const ws = new WebSocket(u, ['duplex.v1']);
      ws.onopen = () => {
        report.extensions = ws.extensions;
        ws.send(JSON.stringify({ id: 1, type: 'subscribe', channel: ch }));
      };
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.type === 'ok' && f.id === 1) {
          for (let i = 1; i <= n; i++) {
            ws.send(JSON.stringify({ id: 'p' + i, type: 'publish', channel: ch, data: { n: i, text: 'ünïcødé '.repeat(200) } }));
          }
        } else if (f.type === 'message') {
          report.messages.push(f.data);
          if (report.messages.length === n) { ws.close(1000); resolve(report); }
        }
      };
      ws.onerror = () => reject(new Error('websocket error'));
      setTimeout(() => reject(new Error('timeout')), 30000);
    }), [url, channel, Number(nText)]);
    console.log(JSON.stringify(report));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
