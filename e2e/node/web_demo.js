// Drives the duplex demo page in Debian's chromium for the Go tests in
// e2e/web_browser_test.go, which hold the test's logic; this script only
// runs the browser.
//
// usage: node web_demo.js
// Reads one JSON command a line on stdin, answers one JSON line on stdout:
//   {"cmd":"open","url":U,"width":W,"height":H}  new page at U, that viewport
//   {"cmd":"wait","expr":E,"timeout":MS}         until the expression E is truthy
//   {"cmd":"eval","expr":E}                      the value of E (JSON)
//   {"cmd":"fill","selector":S,"value":V}        type V into the field S
//   {"cmd":"press","selector":S,"key":K}         focus S and press K (keyboard use)
//   {"cmd":"click","selector":S}
//   {"cmd":"screenshot","path":P,"width":W,"height":H,"scheme":"light"|"dark"}
//   {"cmd":"quit"}
// Every answer is {"ok":true,"value":…} or {"ok":false,"error":"…"}, plus
// "console": the page errors and console errors seen since the last answer,
// each {"type":"pageerror"|"console","text":…,"url":…}, so the test can
// refuse them.
const readline = require('readline');
const chromium = require('./browser');

(async () => {
  const browser = await chromium.launch();
  let page = null;
  let seen = [];
  const watch = (p) => {
    p.on('pageerror', (e) => seen.push({ type: 'pageerror', text: String(e.stack || e.message) }));
    p.on('console', (m) => {
      if (m.type() === 'error') seen.push({ type: 'console', text: m.text(), url: m.location()?.url || '' });
    });
  };
  const handlers = {
    async open(c) {
      if (page) await page.close();
      page = await browser.newPage({ viewport: { width: c.width || 1280, height: c.height || 800 } });
      watch(page);
      await page.goto(c.url);
      return page.url();
    },
    async wait(c) {
      await page.waitForFunction(c.expr, null, { timeout: c.timeout || 30000, polling: 100 });
      return true;
    },
    async eval(c) { return page.evaluate(c.expr); },
    async fill(c) { await page.fill(c.selector, String(c.value)); return true; },
    async press(c) { await page.focus(c.selector); await page.keyboard.press(c.key); return true; },
    async click(c) { await page.click(c.selector); return true; },
    async screenshot(c) {
      if (c.width) await page.setViewportSize({ width: c.width, height: c.height });
      await page.emulateMedia({ colorScheme: c.scheme || 'light' });
      // Let the panes lay out and redraw at the new size first.
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      await page.screenshot({ path: c.path, fullPage: true });
      return c.path;
    },
  };
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    if (c.cmd === 'quit') break;
    let answer;
    try {
      const h = handlers[c.cmd];
      if (!h) throw new Error(`unknown command ${c.cmd}`);
      answer = { ok: true, value: await h(c) };
    } catch (e) {
      answer = { ok: false, error: String(e.message || e) };
    }
    answer.console = seen;
    seen = [];
    process.stdout.write(JSON.stringify(answer) + '\n');
  }
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
