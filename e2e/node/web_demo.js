// Drives the duplex demo page (and so duplex.js) in Debian's chromium.
// usage: node web_demo.js HUB_URL CHANNEL TRANSPORT BEFORE LIVE
// The page subscribes to CHANNEL from offset 0 over TRANSPORT; it must show
// the BEFORE messages already published, then this script publishes LIVE
// more through duplex.js and waits for them. Prints one JSON line:
// {"transport": <what duplex.js ended up using>, "offsets": [...]}.
const chromium = require('./browser');

const [hub, channel, transport, before, live] = process.argv.slice(2);
const want = Number(before) + Number(live);

(async () => {
  const browser = await chromium.launch();
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error('pageerror:', e.message));
    const url = `${hub}/?channel=${channel}&transport=${transport}&cursor=${encodeURIComponent(channel + '::0')}`;
    await page.goto(url);
    const count = () => page.$$eval('#log div', (ds) => ds.filter((d) => d.textContent.startsWith('#')).length);
    await page.waitForFunction((n) => document.querySelectorAll('#log div').length >= n, Number(before), { timeout: 30000 });
    await page.evaluate(async ([ch, n]) => {
      const { connect } = await import('/duplex.js');
      const h = connect('');
      for (let i = 0; i < n; i++) await h.publish(ch, { live: i });
    }, [channel, Number(live)]);
    await page.waitForFunction((n) => document.querySelectorAll('#log div').length >= n, want, { timeout: 30000 });
    const lines = await page.$$eval('#log div', (ds) => ds.map((d) => d.textContent));
    const offsets = lines.filter((l) => l.startsWith('#')).map((l) => Number(l.slice(1).split(' ')[0]));
    const used = await page.evaluate(() => window.duplexDemo.sub.transport);
    if ((await count()) !== lines.length) console.error('non-message lines:', lines.filter((l) => !l.startsWith('#')));
    console.log(JSON.stringify({ transport: used, offsets, lines: lines.length }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
