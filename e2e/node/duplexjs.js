// Drives duplex.js in Debian's chromium (through browser.js) for the Go
// tests in e2e/duplexjs_browser_test.go.
// usage: node duplexjs.js SCENARIO JSON_ARGS
// Prints one JSON line: the scenario's findings, plus "console": every
// console error and page error of the pages (the Go test decides which, if
// any, it can accept).
//
// Scenarios:
//   roundtrip {url, channel, transport, before, live}: a page at url
//     subscribes from offset 0, gets the `before` messages already
//     published, publishes `live` more with hub.publish, is cut (sub.cut())
//     and gets `live` more; also reads history both ways.
//   shared {url, channel, live}: two tabs of one browser context subscribe
//     with shared: true; reports the hub's subscriber count for the
//     channel, then publishes `live` from tab 1 and reports what each got.
//   token {url, channel, secret, ttl, transport}: the page's token is a
//     function minting HS256 tokens that live ttl seconds (signed here, in
//     Node); reports offsets received before and after the first token's
//     connection ended at its expiry.
//   chat {url, text}: the chat page of docs/client.md: type text, send,
//     and see it come back in the list.
'use strict';
const crypto = require('crypto');
const chromium = require('./browser');

const [scenario, argText] = process.argv.slice(2);
const args = JSON.parse(argText || '{}');
const problems = [];

function watch(page, name) {
  page.on('pageerror', (e) => problems.push(`${name} pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${name} console: ${m.text()}`); });
}

function mint(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${crypto.createHmac('sha256', secret).update(head).digest('base64url')}`;
}

// subscribeIn starts a subscription in page, recording into window.rec.
function subscribeIn(page, opts) {
  return page.evaluate(async ({ channel, transport, shared, cursor, tokenFn }) => {
    const { connect } = await import('/duplex.js');
    window.rec = { offsets: [], gaps: [], states: [], errors: [], disconnects: [], tokenCalls: 0 };
    const o = { transport, shared, backoff: { base: 100, cap: 1000 } };
    if (tokenFn) o.token = async () => { window.rec.tokenCalls++; return window.mintToken(); };
    window.hub = connect('', o);
    window.sub = window.hub.subscribe([channel], {
      message: (m) => window.rec.offsets.push(m.offset),
      gap: (g) => window.rec.gaps.push(g.next),
      state: (s) => window.rec.states.push(s),
      error: (e) => window.rec.errors.push(e.message),
      disconnect: (d) => window.rec.disconnects.push(d),
    }, cursor ? { cursor } : {});
  }, opts);
}

const got = (page, n) => page.waitForFunction((k) => window.rec.offsets.length >= k, n, { timeout: 30000 });
const record = (page) => page.evaluate(() => ({
  ...window.rec, transport: window.sub.transport, state: window.sub.state, stats: window.sub.stats(), cursor: window.sub.cursor(),
}));

const scenarios = {
  async roundtrip(browser) {
    const page = await browser.newPage();
    watch(page, 'page');
    await page.goto(`${args.url}/healthz`);
    await subscribeIn(page, { channel: args.channel, transport: args.transport, cursor: `${args.channel}::0` });
    await got(page, args.before);
    await page.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    const publish = (from) => page.evaluate(async ([ch, from, n]) => {
      const via = [];
      for (let i = 0; i < n; i++) via.push((await window.hub.publish(ch, { n: from + i })).offset);
      return via;
    }, [args.channel, from, args.live]);
    const first = await publish(args.before + 1);
    await got(page, args.before + args.live);
    const beforeCut = await record(page);
    await page.evaluate(() => window.sub.cut());
    await page.waitForFunction((r) => window.sub.stats().reconnects > r && window.sub.state === 'open',
      beforeCut.stats.reconnects, { timeout: 30000 });
    const second = await publish(args.before + args.live + 1);
    await got(page, args.before + 2 * args.live);
    const history = await page.evaluate(async (ch) => {
      const a = await window.hub.history(ch, 2, 3);
      const b = await window.hub.history(ch, { after: 4, limit: 2 });
      return [a.messages.map((m) => m.offset), b.messages.map((m) => m.offset)];
    }, args.channel);
    return { ...(await record(page)), beforeCut: beforeCut.stats, published: [...first, ...second], history };
  },

  async shared(browser) {
    const ctx = await browser.newContext();
    const tabs = [await ctx.newPage(), await ctx.newPage()];
    for (const [i, tab] of tabs.entries()) {
      watch(tab, `tab${i + 1}`);
      await tab.goto(`${args.url}/healthz`);
      await subscribeIn(tab, { channel: args.channel, transport: 'auto', shared: true });
    }
    for (const tab of tabs) await tab.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    const info = await tabs[0].evaluate(async (ch) => (await fetch(`/v1/channels/${ch}`)).json(), args.channel);
    const worker = await tabs[0].evaluate(() => typeof SharedWorker);
    await tabs[0].evaluate(async ([ch, n]) => { for (let i = 1; i <= n; i++) await window.hub.publish(ch, { n: i }); }, [args.channel, args.live]);
    for (const tab of tabs) await got(tab, args.live);
    const recs = [];
    for (const tab of tabs) recs.push(await record(tab));
    await ctx.close();
    return { subscribers: info.subscribers, worker, tabs: recs };
  },

  async token(browser) {
    const page = await browser.newPage();
    watch(page, 'page');
    const exps = [];
    await page.exposeFunction('mintToken', () => {
      const exp = Math.floor(Date.now() / 1000) + args.ttl;
      exps.push(exp);
      return mint(args.secret, { sub: 'browser', exp, subscribe: ['*'], publish: ['*'] });
    });
    await page.goto(`${args.url}/healthz`);
    await subscribeIn(page, { channel: args.channel, transport: args.transport, cursor: `${args.channel}::0`, tokenFn: true });
    await page.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    await page.evaluate(async (ch) => window.hub.publish(ch, { n: 1 }), args.channel);
    await got(page, 1);
    // The hub ends the first token's connection once exp (+5 s leeway)
    // has passed; wait for that reconnect, then publish again.
    const firstExp = exps[0];
    await page.waitForFunction(() => window.sub.stats().reconnects >= 1 && window.sub.state === 'open', null, { timeout: 60000 });
    const reconnectedAt = Date.now() / 1000;
    await page.evaluate(async (ch) => window.hub.publish(ch, { n: 2 }), args.channel);
    await got(page, 2);
    return { ...(await record(page)), firstExp, reconnectedAt, minted: exps.length };
  },

  async chat(browser) {
    const page = await browser.newPage();
    watch(page, 'page');
    await page.goto(args.url);
    const input = page.locator('input').first();
    await input.waitFor({ timeout: 30000 });
    // The page says it is connected before we send.
    await page.waitForFunction(() => /open/.test(document.body.textContent), null, { timeout: 30000 });
    await input.fill(args.text);
    await input.press('Enter');
    await page.waitForFunction((t) => [...document.querySelectorAll('li')].some((li) => li.textContent.includes(t)), args.text, { timeout: 30000 });
    return { items: await page.$$eval('li', (ls) => ls.map((l) => l.textContent)) };
  },
};

(async () => {
  const browser = await chromium.launch();
  try {
    const out = await scenarios[scenario](browser);
    console.log(JSON.stringify({ ...out, console: problems }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e, problems); process.exit(1); });
