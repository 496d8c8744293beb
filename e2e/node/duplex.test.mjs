// Unit tests of duplex.js's pure logic, with Node's own runner:
//   node --test e2e/node/duplex.test.mjs      (scripts/test runs it)
// The module is the embedded file itself, imported as it is served.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  parseCursor, cursorText, backoffDelay, acceptItem, createLineSplitter, parseNdjsonLine,
  wsCloseAction, tokenExpiry, refreshAt, connect,
} from '../../web/static/duplex.js';

test('cursor: parse and format round trip, sorted, channels with colons', () => {
  const text = 'b:k3v9x2ab1c:7,a:x:y:k3v9x2ab1c:42,c::0';
  const cur = parseCursor(text);
  assert.deepEqual(cur, {
    b: { epoch: 'k3v9x2ab1c', offset: 7 },
    'a:x:y': { epoch: 'k3v9x2ab1c', offset: 42 },
    c: { epoch: '', offset: 0 },
  });
  assert.equal(cursorText(cur), 'a:x:y:k3v9x2ab1c:42,b:k3v9x2ab1c:7,c::0');
  assert.deepEqual(parseCursor(cursorText(cur)), cur);
  assert.deepEqual(parseCursor(''), {});
  assert.deepEqual(parseCursor({ a: { epoch: 'e', offset: 3 } }), { a: { epoch: 'e', offset: 3 } });
});

test('cursor: bad entries are refused with the entry named', () => {
  for (const bad of ['chat', 'chat:5', ':e:1', 'chat:e:-1', 'chat:e:', 'chat:E:1', 'chat:e:1x',
    'chat:abcdefghijklmnopq:1', 'a:e:1,a:e:2', 'chat:e:123456789012345678901']) {
    assert.throws(() => parseCursor(bad), /invalid cursor/, bad);
  }
  assert.throws(() => parseCursor({ a: { epoch: 'e', offset: -1 } }), /invalid cursor/);
});

test('backoff: full jitter within [0, min(cap, base*2^(n-1)))', () => {
  const opts = { base: 100, cap: 1000 };
  assert.equal(backoffDelay(1, opts, () => 0), 0);
  assert.equal(backoffDelay(1, opts, () => 0.999999), 99.9999);
  assert.equal(backoffDelay(3, opts, () => 0.5), 200);
  assert.equal(backoffDelay(4, opts, () => 0.5), 400);
  assert.equal(backoffDelay(5, opts, () => 0.5), 500); // capped at 1000
  assert.equal(backoffDelay(1e6, opts, () => 0.5), 500); // no overflow to Infinity/NaN
  assert.equal(backoffDelay(0, opts, () => 1), 100); // attempt 0 is treated as 1
  assert.equal(backoffDelay(2, undefined, () => 0.5), 250); // defaults base 250, cap 10000
  for (let n = 1; n < 40; n++) {
    const d = backoffDelay(n);
    assert.ok(d >= 0 && d < Math.min(10000, 250 * 2 ** (n - 1)), `attempt ${n}: ${d}`);
  }
});

const msg = (channel, epoch, offset) => ({ type: 'message', channel, epoch, offset, time: 1, data: offset });

test('dedup: each message once, in order, across a replay that repeats some', () => {
  const cur = parseCursor('a::0');
  const got = [];
  const feed = [1, 2, 3, 2, 3, 4, 1, 5].map((o) => msg('a', 'e1', o));
  for (const m of feed) if (acceptItem(cur, m)) got.push(m.offset);
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.equal(cursorText(cur), 'a:e1:5');
});

test('dedup: a gap moves the cursor; a gap saying nothing new is dropped; a new epoch is accepted', () => {
  const cur = parseCursor('a:e1:5');
  assert.equal(acceptItem(cur, { type: 'gap', channel: 'a', epoch: 'e1', next: 6 }), false);
  assert.equal(acceptItem(cur, { type: 'gap', channel: 'a', epoch: 'e1', next: 10 }), true);
  assert.equal(cursorText(cur), 'a:e1:9');
  assert.equal(acceptItem(cur, msg('a', 'e1', 9)), false);
  assert.equal(acceptItem(cur, msg('a', 'e1', 10)), true);
  assert.equal(acceptItem(cur, msg('a', 'e2', 1)), true); // another epoch starts again at 1
  assert.equal(cursorText(cur), 'a:e2:1');
  assert.equal(acceptItem(cur, { type: 'heartbeat', cursor: 'a:e2:1' }), false);
  assert.equal(acceptItem(cur, null), false);
  // A channel with no entry yet takes whatever comes first.
  assert.equal(acceptItem(cur, msg('b', 'e3', 7)), true);
  assert.equal(cursorText(cur), 'a:e2:1,b:e3:7');
});

test('ndjson: lines split across chunks at every byte, CRLF, blank lines, last line without newline', () => {
  const stream = '{"type":"heartbeat","cursor":"a:e:0"}\r\n\n{"type":"message","channel":"a","epoch":"e","offset":1,"time":1,"data":"x\\ny"}\n{"type":"gap","channel":"a","epoch":"e","next":5}';
  for (let cut = 0; cut <= stream.length; cut++) {
    const s = createLineSplitter();
    const lines = [...s.push(stream.slice(0, cut)), ...s.push(stream.slice(cut)), ...s.flush()];
    assert.equal(lines.length, 3, `cut at ${cut}: ${JSON.stringify(lines)}`);
    assert.deepEqual(lines.map((l) => parseNdjsonLine(l).value.type), ['heartbeat', 'message', 'gap']);
  }
  // One character at a time.
  const s = createLineSplitter();
  const lines = [];
  for (const ch of stream) lines.push(...s.push(ch));
  lines.push(...s.flush());
  assert.equal(lines.length, 3);
  assert.deepEqual(s.flush(), []);
});

test('ndjson: malformed lines are reported as errors, and the lines after them still parse', () => {
  const s = createLineSplitter();
  const lines = s.push('{"type":"message","channel":"a","epoch":"e","offset":1}\n{"type":\nnot json\n[1,2]\n42\nnull\n{"type":"message","channel":"a","epoch":"e","offset":2}\n');
  const parsed = lines.map(parseNdjsonLine);
  assert.deepEqual(parsed.map((p) => (p.error ? 'error' : p.value.offset)), [1, 'error', 'error', 'error', 'error', 'error', 2]);
  assert.match(parsed[1].error, /malformed line/);
  assert.match(parsed[3].error, /not a JSON object/);
});

test('ws close codes', () => {
  assert.equal(wsCloseAction(1008), 'fatal');
  for (const c of [1002, 1003, 1007, 1009]) assert.equal(wsCloseAction(c), 'failed');
  for (const c of [1001, 1006, 1011, 1013]) assert.equal(wsCloseAction(c), 'resume');
});

test('token expiry and refresh time', () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const tok = `${b64({ alg: 'HS256' })}.${b64({ exp: 2000, sub: 'x' })}.sig`;
  assert.equal(tokenExpiry(tok), 2000000);
  assert.equal(tokenExpiry('not a jwt'), 0);
  assert.equal(tokenExpiry(`${b64({})}.${b64({ sub: 'x' })}.s`), 0);
  // An hour-long token is refreshed 60 s early; a 10 s one 1 s early.
  assert.equal(refreshAt(3600000, 0), 3540000);
  assert.equal(refreshAt(10000, 0), 9000);
  assert.equal(refreshAt(0, 0), Infinity);
});

test('a token function is called once while fresh, again when forced', async () => {
  let calls = 0;
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const hub = connect('http://127.0.0.1:9', { token: async () => { calls++; return `${b64({})}.${b64({ exp: Date.now() / 1000 + 3600 })}.s`; } });
  await hub.token();
  await hub.token();
  assert.equal(calls, 1);
  await hub.token(true);
  assert.equal(calls, 2);
  hub.close();
});
