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
//   shared {url, channels: [a, b], before, live}: two tabs of one browser
//     context subscribe with shared: true, tab 1 to a from offset 0, then
//     tab 2 to a (from 0) and b; reports the hub's subscriber counts of a
//     and b, then publishes `live` to each from tab 1 and reports what
//     each tab got, by channel. noWorker: the tabs have no SharedWorker.
//   token {url, channel, secret, ttl, transport, expiredFirst}: the page's
//     token is a function minting HS256 tokens that live ttl seconds
//     (signed here, in Node; with expiredFirst the first has expired
//     already, so the hub answers 401); reports offsets received before
//     and after the first token's connection ended.
//   offline {url, channel, transport}: the browser context goes offline
//     and the subscription is cut; it must not retry until the context is
//     back online, then get what was published meanwhile.
//   wake {url, channel, unblock, event}: a WebSocket subscription with a
//     10-minute backoff fails against a front refusing upgrades; the front
//     is told to let them through (GET unblock) and `event` ('online' or
//     'visibilitychange') is fired: it must open now, not in minutes.
//   presence {url, channel, transport}: tab A subscribes with joinLeave and
//     info {name: 'A'}; tab B (another browser context, so another
//     connection) subscribes with info {name: 'B'}. Reports the joins A
//     saw, hub.presence and hub.presenceStats from A while both are in,
//     the leave A sees when B closes, and A's stats after one message.
//   cors {page, hub, channel}: a page on another origin (page) publishes to
//     hub with a JSON POST and reads its history with If-None-Match — both
//     need a CORS preflight. Reports each fetch's status or error.
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
    window.rec = { offsets: [], gaps: [], states: [], errors: [], disconnects: [], logs: [], tokenCalls: 0 };
    window.byChannel = {};
    const o = { transport, shared, backoff: { base: 100, cap: 1000 }, log: (l) => window.rec.logs.push(l) };
    if (tokenFn) o.token = async () => { window.rec.tokenCalls++; return window.mintToken(); };
    window.hub = connect('', o);
    window.sub = window.hub.subscribe(channel, {
      message: (m) => { window.rec.offsets.push(m.offset); (window.byChannel[m.channel] ||= []).push(m.offset); },
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
  async cors(browser) {
    const page = await browser.newPage();
    watch(page, 'page');
    await page.goto(args.page);
    return page.evaluate(async ({ hub, channel }) => {
      const attempt = async (u, init) => {
        try { const r = await fetch(u, init); return { status: r.status }; } catch (e) { return { error: String(e) }; }
      };
      const base = `${hub}/v1/channels/${channel}/messages`;
      const publish = await attempt(base, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"from":"elsewhere"}' });
      const history = await attempt(`${base}?after=0`, { headers: { 'If-None-Match': '"none"' } });
      return { publish, history };
    }, args);
  },

  async presence(browser) {
    const ctxB = await browser.newContext();
    const a = await browser.newPage();
    const b = await ctxB.newPage();
    watch(a, 'tab A');
    watch(b, 'tab B');
    await a.goto(`${args.url}/healthz`);
    await b.goto(`${args.url}/healthz`);
    const sub = (page, name, joinLeave) => page.evaluate(async ([ch, tr, name, joinLeave]) => {
      const { connect } = await import('/duplex.js');
      window.ev = [];
      window.offsets = [];
      window.hub = connect('', { transport: tr, backoff: { base: 100, cap: 1000 } });
      window.sub = window.hub.subscribe(ch, {
        message: (m) => window.offsets.push(m.offset),
        join: (e) => window.ev.push({ type: e.type, user: e.user, info: e.info, client: e.client }),
        leave: (e) => window.ev.push({ type: e.type, user: e.user, info: e.info, client: e.client }),
      }, { joinLeave, info: { name } });
    }, [args.channel, args.transport, name, joinLeave]);
    await sub(a, 'A', true);
    await a.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    await sub(b, 'B', false);
    await b.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    await a.waitForFunction(() => window.ev.some((e) => e.type === 'join' && e.info && e.info.name === 'B'), null, { timeout: 30000 });
    const members = await a.evaluate(async (ch) => (await window.hub.presence(ch)).members
      .map((m) => ({ name: m.info && m.info.name, transport: m.transport })).sort((x, y) => (x.name < y.name ? -1 : 1)), args.channel);
    const stats = await a.evaluate(async (ch) => window.hub.presenceStats(ch), args.channel);
    await b.evaluate(() => window.sub.close());
    await a.waitForFunction(() => window.ev.some((e) => e.type === 'leave' && e.info && e.info.name === 'B'), null, { timeout: 30000 });
    await a.evaluate(async (ch) => window.hub.publish(ch, { n: 1 }), args.channel);
    await a.waitForFunction(() => window.offsets.length >= 1, null, { timeout: 30000 });
    const out = await a.evaluate(() => ({ events: window.ev, offsets: window.offsets, stats: window.sub.stats(), cursor: window.sub.cursor() }));
    await ctxB.close();
    return { ...out, members, clients: stats.clients };
  },

  async roundtrip(browser) {
    const page = await browser.newPage();
    watch(page, 'page');
    // Count the publishes that went over HTTP.
    await page.addInitScript(() => {
      const native = window.fetch;
      window.httpPublishes = 0;
      window.fetch = (u, init) => { if (init?.method === 'POST') window.httpPublishes++; return native(u, init); };
    });
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
    const httpPublishes = await page.evaluate(() => window.httpPublishes);
    return { ...(await record(page)), beforeCut: beforeCut.stats, published: [...first, ...second], history, httpPublishes };
  },

  async shared(browser) {
    const ctx = await browser.newContext();
    const tabs = [await ctx.newPage(), await ctx.newPage()];
    const [a, b] = args.channels;
    for (const [i, tab] of tabs.entries()) {
      watch(tab, `tab${i + 1}`);
      if (args.noWorker) await tab.addInitScript(() => { delete window.SharedWorker; });
      await tab.goto(`${args.url}/healthz`);
    }
    // Tab 1 takes channel a from the start; tab 2 joins later with a and b
    // from the start: the worker opens its connection again, merged.
    await subscribeIn(tabs[0], { channel: [a], transport: 'auto', shared: true, cursor: `${a}::0` });
    await got(tabs[0], args.before);
    await subscribeIn(tabs[1], { channel: [a, b], transport: 'auto', shared: true, cursor: `${a}::0` });
    await got(tabs[1], args.before);
    for (const tab of tabs) await tab.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    const info = await tabs[0].evaluate(async (chs) => Promise.all(chs.map(async (ch) => (await (await fetch(`/v1/channels/${ch}`)).json()).subscribers)), [a, b]);
    const worker = await tabs[0].evaluate(() => typeof SharedWorker);
    await tabs[0].evaluate(async ([chs, n]) => {
      for (let i = 1; i <= n; i++) for (const ch of chs) await window.hub.publish(ch, { n: i });
    }, [[a, b], args.live]);
    await got(tabs[0], args.before + args.live);
    await got(tabs[1], args.before + 2 * args.live);
    const recs = [];
    for (const tab of tabs) {
      recs.push({ ...(await record(tab)), byChannel: await tab.evaluate(() => window.byChannel) });
    }
    await ctx.close();
    return { subscribers: info, worker, tabs: recs };
  },

  async token(browser) {
    const page = await browser.newPage();
    watch(page, 'page');
    const exps = [];
    await page.exposeFunction('mintToken', () => {
      // expiredFirst: the first token has expired already (past the hub's 5 s leeway).
      const exp = Math.floor(Date.now() / 1000) + (args.expiredFirst && exps.length === 0 ? -60 : args.ttl);
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

  async offline(browser) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    watch(page, 'page');
    await page.goto(`${args.url}/healthz`);
    await subscribeIn(page, { channel: args.channel, transport: args.transport, cursor: `${args.channel}::0` });
    await page.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    await ctx.setOffline(true);
    await page.evaluate(() => window.sub.cut());
    await page.waitForFunction(() => window.rec.states.some((s) => s.reason === 'offline'), null, { timeout: 30000 });
    const offlineAt = await record(page);
    const res = await fetch(`${args.url}/v1/channels/${args.channel}/messages`, { method: 'POST', body: '{"n":1}' });
    if (res.status !== 201) throw new Error(`publish: ${res.status}`);
    // An observation window, not a wait for something: with backoff capped
    // at 1 s, a client that retried while offline would have tried again
    // in it several times.
    await page.waitForTimeout(3000);
    const stillOffline = await record(page);
    await ctx.setOffline(false);
    await got(page, 1);
    const after = await record(page);
    await ctx.close();
    return { ...after, offlineRequests: offlineAt.stats.requests, stillOfflineRequests: stillOffline.stats.requests, stillOfflineState: stillOffline.state };
  },

  async wake(browser) {
    const page = await browser.newPage();
    watch(page, 'page');
    await page.goto(`${args.url}/healthz`);
    await page.evaluate(async ({ channel, backoff }) => {
      const { connect } = await import('/duplex.js');
      window.rec = { states: [] };
      window.sub = connect('', { transport: 'ws', backoff }).subscribe([channel], { state: (s) => window.rec.states.push(s) });
    }, { channel: args.channel, backoff: { base: 600000, cap: 600000 } });
    // Until the backoff drawn is a long one (full jitter may draw a short
    // one), cut again: each cut makes a new attempt, refused, and a new draw.
    let waiting;
    for (let k = 1; k <= 20; k++) {
      await page.waitForFunction((n) => window.rec.states.filter((s) => s.state === 'reconnecting' && s.delay > 0).length >= n, k, { timeout: 30000 });
      waiting = await page.evaluate(() => window.rec.states.filter((s) => s.state === 'reconnecting' && s.delay > 0).pop());
      if (waiting.delay >= 60000) break;
      await page.evaluate(() => window.sub.cut());
    }
    const res = await fetch(`${args.unblock}`);
    if (!res.ok) throw new Error(`unblock: ${res.status}`);
    await page.evaluate((ev) => (ev === 'online' ? window : document).dispatchEvent(new Event(ev)), args.event);
    await page.waitForFunction(() => window.sub.state === 'open', null, { timeout: 30000 });
    return { waiting, state: await page.evaluate(() => window.sub.state) };
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
