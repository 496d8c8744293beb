// A duplex.js subscriber in Debian's chromium whose page stalls: its main
// thread is kept busy while the hub publishes, so the WebSocket's messages
// are not taken off the socket, the socket fills, the hub's queue for the
// page overflows and the hub, unable to write its 1013 close frame, drops
// the connection. Then the page runs again, and catches up.
// usage: node ws_stall.js HUB_URL CHANNEL TRANSPORT ROUNDS PER_ROUND PAYLOAD_BYTES
// The page subscribes to CHANNEL from offset 0 over TRANSPORT. In each of
// ROUNDS stalls the page itself publishes PER_ROUND messages with
// synchronous XHRs (which keep its event loop blocked) and then polls the
// hub's /metrics, still synchronously, until the hub has let its session
// go; then it runs until it has every message so far over a new
// WebSocket. Prints one JSON line: {"offsets": [...], "closes": [{code,
// clean, reason, got}...] (as the browser reported them), "disconnects":
// [...] (as duplex.js did), "opens": n, "transport": what duplex.js uses
// at the end, "stalls": [{cuts, publishMs, waitMs}...]}.
const chromium = require('./browser');

const [hub, channel, transport, rounds, perRound, payloadBytes] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch();
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
    await page.evaluate(async ([ch, tr]) => {
      const { connect } = await import('/duplex.js');
      window.got = [];
      window.disconnects = [];
      const h = connect('', { transport: tr });
      window.sub = h.subscribe([ch], {
        message: (m) => window.got.push(m.offset),
        gap: (g) => window.got.push(`gap:${g.next}`),
        disconnect: (d) => window.disconnects.push(d),
        error: (e) => window.disconnects.push({ error: e.message }),
      }, { cursor: `${ch}::0` });
    }, [channel, transport]);
    await page.waitForFunction(() => window.wsOpens >= 1, null, { timeout: 30000 });

    const stalls = [];
    for (let k = 1; k <= Number(rounds); k++) {
      const stall = await page.evaluate(([ch, from, count, size]) => {
        const metric = (text, name) => Number((text.match(new RegExp(`^${name} (\\S+)$`, 'm')) || [])[1]);
        const p = 'x'.repeat(size);
        const t0 = Date.now();
        for (let i = from; i < from + count; i++) {
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
      }, [channel, (k - 1) * Number(perRound) + 1, Number(perRound), Number(payloadBytes)]);
      if (stall.error) throw new Error(stall.error);
      stalls.push(stall);
      // Running again: the page must catch up over a new WebSocket before
      // the next stall.
      try {
        await page.waitForFunction(([want, opens]) => window.got.length >= want && window.wsOpens >= opens,
          [k * Number(perRound), k + 1], { timeout: 60000 });
      } catch (e) {
        console.error(`round ${k}: waiting for the messages:`, e.message);
        break;
      }
    }
    const res = await page.evaluate(() => ({ offsets: window.got, closes: window.wsCloses, opens: window.wsOpens, disconnects: window.disconnects }));
    res.stalls = stalls;
    res.transport = await page.evaluate(() => window.sub.transport);
    console.log(JSON.stringify(res));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
