// A real browser's EventSource against the hub, for e2e/stream_browser_test.go.
// usage: node stream_eventsource.js HUB_URL CHANNEL WANT
// Opens chromium at the hub's origin (so no CORS applies), opens
// new EventSource('/v1/sse?channel=CHANNEL') and reports on stdout, one JSON
// object a line, as things happen:
//   {"ev":"open","opens":n}                   the EventSource (re)opened
//   {"ev":"message","offset":o,"epoch":e,"id":lastEventId}
//   {"ev":"gap","next":n,"epoch":e,"id":lastEventId}
//   {"ev":"error","readyState":s}            a drop (the browser reconnects by itself)
// and exits after WANT messages with {"ev":"done"}. The page never
// reconnects on its own initiative: every reconnect is the browser's.
const chromium = require('./browser');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [hub, channel, want] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'duplex-es-'));
  const ctx = await chromium.launchPersistent(dir);
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on('pageerror', (e) => console.error('pageerror:', e.message));
    await page.exposeFunction('report', (o) => out(o));
    await page.goto(hub + '/healthz'); // the hub's origin
    const done = page.evaluate(([ch, want]) => new Promise((resolve) => {
      const es = new EventSource('/v1/sse?channel=' + encodeURIComponent(ch));
      let opens = 0, got = 0;
      es.onopen = () => { opens++; window.report({ ev: 'open', opens }); };
      es.onerror = () => { window.report({ ev: 'error', readyState: es.readyState }); };
      es.onmessage = (e) => {
        const m = JSON.parse(e.data);
        window.report({ ev: 'message', offset: m.offset, epoch: m.epoch, id: e.lastEventId });
        if (++got >= want) { es.close(); resolve(); }
      };
      es.addEventListener('gap', (e) => {
        const g = JSON.parse(e.data);
        window.report({ ev: 'gap', next: g.next, epoch: g.epoch, id: e.lastEventId });
      });
    }), [channel, Number(want)]);
    await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), 90000))]);
    out({ ev: 'done' });
  } finally {
    await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
})().catch((e) => { console.error(e); process.exit(1); });
