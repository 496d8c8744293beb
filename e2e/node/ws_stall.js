// A duplex.js WebSocket subscriber in Debian's chromium whose page stalls:
// its main thread is kept busy while the hub publishes, so the WebSocket's
// messages are not taken off the socket, the socket fills, the hub's queue
// for the page overflows and the hub, unable to write its 1013 close frame,
// drops the connection. Then the page runs again.
// usage: node ws_stall.js HUB_URL CHANNEL N PAYLOAD_BYTES
// The page subscribes to CHANNEL from offset 0 over 'ws'; during the stall
// the page itself publishes N messages with synchronous XHRs (which keep
// its event loop blocked) and then polls the hub's /metrics, still
// synchronously, until the hub has cut it as a slow consumer and let the
// session go. Prints one JSON line:
// {"offsets": [...], "closes": [{code, clean, reason}...], "stall": {...}}.
const { chromium } = require('playwright-core');

const [hub, channel, n, payloadBytes] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error('pageerror:', e.message));
    // Record how each WebSocket of the page ended, as the page saw it.
    await page.addInitScript(() => {
      const Native = window.WebSocket;
      window.wsCloses = [];
      window.wsOpens = 0;
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          this.addEventListener('open', () => { window.wsOpens++; });
          this.addEventListener('close', (e) => window.wsCloses.push({ code: e.code, clean: e.wasClean, reason: e.reason, got: window.got.length }));
        }
      };
    });
    await page.goto(`${hub}/healthz`);
    await page.evaluate(async (ch) => {
      const { connect } = await import('/duplex.js');
      window.got = [];
      const h = connect('', { transport: 'ws' });
      window.sub = h.subscribe([ch], {
        message: (m) => window.got.push(m.offset),
        gap: (g) => window.got.push(`gap:${g.next}`),
      }, { cursor: `${ch}::0` });
    }, channel);
    await page.waitForFunction(() => window.wsOpens >= 1, null, { timeout: 30000 });

    const stall = await page.evaluate(([ch, count, size]) => {
      const metric = (text, name) => Number((text.match(new RegExp(`^${name} (\\S+)$`, 'm')) || [])[1]);
      const p = 'x'.repeat(size);
      const t0 = Date.now();
      for (let i = 1; i <= count; i++) {
        const x = new XMLHttpRequest();
        x.open('POST', `/v1/channels/${ch}/messages`, false);
        x.setRequestHeader('Content-Type', 'application/json');
        x.send(JSON.stringify({ n: i, p }));
        if (x.status !== 201) return { error: `publish ${i}: ${x.status} ${x.responseText}` };
      }
      const published = Date.now();
      const deadline = published + 30000;
      for (;;) {
        const x = new XMLHttpRequest();
        x.open('GET', '/metrics', false);
        x.send();
        const cuts = metric(x.responseText, 'duplex_slow_consumer_closes_total');
        const sessions = metric(x.responseText, 'duplex_sessions');
        if (sessions === 0) return { cuts, publishMs: published - t0, waitMs: Date.now() - published };
        if (Date.now() > deadline) return { error: `no cut seen: ${cuts} cuts, ${sessions} sessions` };
      }
    }, [channel, Number(n), Number(payloadBytes)]);
    if (stall.error) throw new Error(stall.error);

    try {
      await page.waitForFunction((want) => window.got.length >= want, Number(n), { timeout: 60000 });
    } catch (e) {
      console.error('waiting for the messages:', e.message);
    }
    const res = await page.evaluate(() => ({ offsets: window.got, closes: window.wsCloses, opens: window.wsOpens }));
    res.stall = stall;
    console.log(JSON.stringify(res));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
