// The client's state machine against a fake WebSocket driven by the test:
// duplicate suppression, ordered flush with DUP retransmission, NAKs,
// timeouts, heartbeat probes, reconnect policy, the original call shape.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Rainbow } from '../src/node.js';
import { FakeWebSocket, hex, waitUntil, nextEvent, within } from '../testlib/harness.mjs';

const enc = (s) => Buffer.from(s).toString('hex');
const u16 = (n) => n.toString(16).padStart(4, '0');

function sendHex(qos, type, id, body, dup = false) {
  const b0 = 0x10 | (dup ? 8 : 0) | (qos << 1);
  return b0.toString(16).padStart(2, '0') + u16(type) + (qos ? u16(id) : '') + enc(body);
}

const FAST = { minDelay: 5, maxDelay: 20, factor: 2, jitter: 0 };

function client(opts = {}) {
  return new Rainbow('ws://gw.test/connect/', Object.assign({
    WebSocket: FakeWebSocket, reconnect: FAST, heartbeat: false,
  }, opts));
}

/** Wait for socket number n (1-based) and open it as a v2 server would. */
async function serve(n, hello = {}, protocol = 'rainbow.v2') {
  await waitUntil(() => FakeWebSocket.instances.length >= n, 5000, 'socket #' + n);
  const ws = FakeWebSocket.instances[n - 1];
  ws.serverOpen(protocol);
  if (protocol === 'rainbow.v2') ws.serverHello(hello);
  return ws;
}

beforeEach(() => FakeWebSocket.reset());

test('connect URL carries device, platform, session, token and extra query args', async () => {
  const rb = client({ device: 'phone 42', platform: 'android', session: true,
    token: async () => 'tok.en', query: { channel: 'room' } });
  const ws = await serve(1);
  assert.equal(ws.url, 'ws://gw.test/connect/?X-DEVICEID=phone%2042&X-CLIENT-OS=android&session=1'
    + '&token=tok.en&channel=room');
  assert.deepEqual(ws.protocols, ['rainbow.v2']);
  assert.equal(ws.binaryType, 'arraybuffer');
  rb.close();
  const rb2 = new Rainbow('http://gw.test/connect/?a=1', { WebSocket: FakeWebSocket, v2: false, token: 't' });
  await waitUntil(() => FakeWebSocket.instances.length === 2);
  assert.equal(FakeWebSocket.instances[1].url, 'ws://gw.test/connect/?a=1&token=t');
  assert.equal(FakeWebSocket.instances[1].protocols, undefined);
  rb2.close();
});

test('QoS 2 push: delivered once until REL, REC repeated for DUP copies', async () => {
  const rb = client({ json: true });
  const seen = [];
  rb.on('message', (type, data, meta) => { seen.push([type, data, meta.qos, meta.msgid, meta.dup]); return { ok: seen.length }; });
  const ws = await serve(1);
  ws.serverSend(hex(sendHex(2, 1002, 7, '{"m":1}')));
  ws.serverSend(hex(sendHex(2, 1002, 7, '{"m":1}', true)));
  ws.serverSend(hex(sendHex(2, 1002, 7, '{"m":1}', true)));
  assert.deepEqual(seen, [[1002, { m: 1 }, 2, 7, false]]);
  const rec = '300007' + enc('{"ok":1}');
  assert.deepEqual(ws.sentHex, [rec, rec, rec]);
  ws.serverSend(hex('400007'));
  assert.equal(ws.sentHex[3], '500007');
  // after REL the msgid is free: the next message under it is new
  ws.serverSend(hex(sendHex(2, 1002, 7, '{"m":1}')));
  assert.equal(seen.length, 2);
  // a REL for an unknown id is answered too
  ws.serverSend(hex('400099'));
  assert.equal(ws.sentHex.at(-1), '500099');
  rb.close();
});

test('QoS 1 push: a DUP copy within the window is acknowledged, not delivered again', async () => {
  const rb = client();
  const seen = [];
  rb.on('message', (type, data) => { seen.push(data); });
  const ws = await serve(1);
  ws.serverSend(hex(sendHex(1, 5, 5, 'a')));
  ws.serverSend(hex(sendHex(1, 5, 5, 'a', true)));
  assert.deepEqual(seen, ['a']);
  assert.deepEqual(ws.sentHex, ['200005', '200005']);
  // not DUP: a new message that reuses the id
  ws.serverSend(hex(sendHex(1, 5, 5, 'a')));
  // DUP of an id never seen, or of other content: delivered
  ws.serverSend(hex(sendHex(1, 5, 6, 'b', true)));
  ws.serverSend(hex(sendHex(1, 5, 5, 'other', true)));
  assert.deepEqual(seen, ['a', 'a', 'b', 'other']);
  rb.close();
});

test('a reply computed asynchronously goes out once; copies meanwhile wait for it', async () => {
  const rb = client();
  let release;
  let calls = 0;
  rb.on('message', () => { calls++; return new Promise((r) => { release = r; }); });
  const ws = await serve(1);
  ws.serverSend(hex(sendHex(2, 1, 3, 'x')));
  ws.serverSend(hex(sendHex(2, 1, 3, 'x', true)));
  assert.equal(ws.sent.length, 0);
  release('done');
  await waitUntil(() => ws.sent.length === 1);
  assert.deepEqual(ws.sentHex, ['300003' + enc('done')]);
  assert.equal(calls, 1);
  rb.close();
});

test('QoS 2 push state survives a reconnect only when the session was resumed', async () => {
  const rb = client({ device: 'd1' });
  const seen = [];
  rb.on('message', (t, d) => { seen.push(d); });
  let ws = await serve(1);
  ws.serverSend(hex(sendHex(2, 1, 9, 'q2')));
  ws.serverClose(1006);
  ws = await serve(2, { session_present: true });
  ws.serverSend(hex(sendHex(2, 1, 9, 'q2', true)));
  assert.deepEqual(seen, ['q2']);
  assert.deepEqual(ws.sentHex, ['300009']);
  ws.serverClose(1001);
  ws = await serve(3, { session_present: false });
  ws.serverSend(hex(sendHex(2, 1, 9, 'q2', true)));
  assert.deepEqual(seen, ['q2', 'q2']);
  rb.close();
});

test('sends: queued while away, flushed in call order, in-flight ones retransmitted with DUP', async () => {
  const rb = client({ device: 'd2' });
  let ws = await serve(1);
  const a = rb.send(1, 'A', { qos: 1 });
  const b = rb.send(2, 'B', { qos: 2 });
  assert.equal(ws.sent.length, 2);
  const idA = (ws.sent[0][3] << 8) | ws.sent[0][4];
  const idB = (ws.sent[1][3] << 8) | ws.sent[1][4];
  assert.notEqual(idA, idB);
  assert.equal(ws.sentHex[0], sendHex(1, 1, idA, 'A'));
  assert.equal(ws.sentHex[1], sendHex(2, 2, idB, 'B'));
  ws.serverSend(hex('30' + u16(idB) + enc('rB')));       // REC -> REL
  assert.equal(ws.sentHex[2], '40' + u16(idB));
  ws.serverClose(1006);
  const c = rb.send(3, 'C', { qos: 1 });
  const d = rb.send(4, 'D', { qos: 0 });
  const e = rb.send(5, 'E', { qos: 2 });
  assert.equal(rb.pending, 5);
  ws = await serve(2, { session_present: true });
  const s = ws.sentHex;
  assert.equal(s.length, 5, s.join(' '));
  assert.equal(s[0], sendHex(1, 1, idA, 'A', true));
  assert.equal(s[1], '40' + u16(idB));
  const idC = parseInt(s[2].slice(6, 10), 16);
  const idE = parseInt(s[4].slice(6, 10), 16);
  assert.equal(s[2], sendHex(1, 3, idC, 'C'));
  assert.equal(s[3], sendHex(0, 4, 0, 'D'));
  assert.equal(s[4], sendHex(2, 5, idE, 'E'));
  assert.equal(new Set([idA, idB, idC, idE]).size, 4);
  assert.equal(await d, undefined);
  ws.serverSend(hex('20' + u16(idA) + enc('rA')));
  ws.serverSend(hex('50' + u16(idB)));
  ws.serverSend(hex('20' + u16(idC) + enc('rC')));
  ws.serverSend(hex('30' + u16(idE) + enc('rE')));
  assert.equal(ws.sentHex.at(-1), '40' + u16(idE));
  ws.serverSend(hex('50' + u16(idE)));
  assert.deepEqual(await Promise.all([a, b, c, e]), ['rA', 'rB', 'rC', 'rE']);
  assert.equal(rb.pending, 0);
  rb.close();
});

test('NAK rejects with code, message and temporary; NAK 0 is an error event', async () => {
  const rb = client({ json: true });
  const ws = await serve(1);
  const p = rb.send(7, { x: 1 });
  const id = (ws.sent[0][3] << 8) | ws.sent[0][4];
  ws.serverSend(hex('60' + u16(id) + enc('{"code":503,"message":"breaker open","temporary":true,"retry_after":5}')));
  await assert.rejects(p, (err) => {
    assert.equal(err.name, 'NakError');
    assert.equal(err.code, 503);
    assert.equal(err.message, 'breaker open');
    assert.equal(err.temporary, true);
    assert.equal(err.retryAfter, 5);
    assert.equal(err.msgid, id);
    return true;
  });
  const errEvent = nextEvent(rb, 'error', 5000);
  ws.serverSend(hex('600000' + enc('{"code":502,"message":"backend said 500","temporary":true}')));
  const err = await errEvent;
  assert.deepEqual([err.code, err.message, err.temporary], [502, 'backend said 500', true]);
  rb.close();
});

test('timeouts: a queued send is dropped, a QoS 2 send releases its id before reuse', async () => {
  const rb = client({ reconnect: false });
  await assert.rejects(rb.send(1, 'never', { timeout: 30 }), (e) => e.code === 'ETIMEDOUT' && !e.written);
  const ws = await serve(1);
  assert.equal(ws.sent.length, 0, 'the timed out send was not written');
  const p = rb.send(2, 'slow', { qos: 2, timeout: 30 });
  const id = (ws.sent[0][3] << 8) | ws.sent[0][4];
  await assert.rejects(p, (e) => e.code === 'ETIMEDOUT' && e.written === true);
  assert.equal(ws.sentHex[1], '40' + u16(id), 'REL sent to clear the gateway state');
  // the late REC is finished with REL; the id stays reserved until COM
  ws.serverSend(hex('30' + u16(id)));
  assert.equal(ws.sentHex[2], '40' + u16(id));
  ws.serverSend(hex('50' + u16(id)));
  const q = rb.send(3, 'next', { qos: 1 });
  assert.notEqual((ws.sent[3][3] << 8) | ws.sent[3][4], id);
  ws.serverSend(hex('20' + ws.sentHex[3].slice(6, 10)));
  assert.equal(await q, '');
  rb.close();
});

test('a QoS 2 send whose REC came resolves with the reply even if COM is late', async () => {
  const rb = client();
  const ws = await serve(1);
  const p = rb.send(2, 'x', { qos: 2, timeout: 200 });
  const id = (ws.sent[0][3] << 8) | ws.sent[0][4];
  ws.serverSend(hex('30' + u16(id) + enc('reply')));
  assert.equal(await p, 'reply');
  rb.close();
});

test('messages over max_message_size are refused locally', async () => {
  const rb = client();
  const ws = await serve(1, { max_message_size: 100 });
  await assert.rejects(rb.send(1, 'x'.repeat(96)), (e) => e.code === 'EMSGSIZE');
  assert.equal(ws.sent.length, 0);
  await rb.send(1, 'x'.repeat(95), { qos: 0 });
  assert.equal(ws.sent.length, 1);
  rb.close();
});

test('heartbeat: REL probe when idle, COM keeps the connection, silence drops it', async () => {
  const rb = client({ heartbeat: { interval: 60, timeout: 1000 } });
  const ws = await serve(1);
  let answering = true;
  const origSend = ws.send.bind(ws);
  ws.send = (data) => { // the server side answers REL with COM (when answering)
    origSend(data);
    const b = Uint8Array.from(data);
    if (answering && b[0] === 0x40) setTimeout(() => ws.serverSend(Uint8Array.of(0x50, b[1], b[2])), 0);
  };
  await waitUntil(() => ws.sent.length >= 3, 10000, 'three probes');
  assert.ok(ws.sentHex.every((x) => x.startsWith('40') && x.length === 6), ws.sentHex.join(' '));
  assert.equal(rb.state, 'open');
  const closed = nextEvent(rb, 'close', 10000);
  answering = false;
  const c = await closed;
  assert.equal(c.reconnecting, true);
  assert.match(c.reason, /heartbeat/);
  await serve(2);
  assert.equal(rb.state, 'open');
  rb.close();
});

test('no reconnect after a close in 4000..4499 (kicked, session taken over); sends fail', async () => {
  const rb = client();
  const ws = await serve(1);
  const p = rb.send(1, 'x');
  const closed = nextEvent(rb, 'close', 5000);
  ws.serverClose(4409, 'session taken over');
  const c = await closed;
  assert.deepEqual([c.code, c.reconnecting], [4409, false]);
  await assert.rejects(p, (e) => e.code === 'ECLOSED' && e.closeCode === 4409);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(rb.state, 'closed');
  rb.open(); // explicit open connects again
  await serve(2);
  rb.close();
});

test('reconnect backoff grows by factor up to maxDelay', async () => {
  const rb = client({ reconnect: { minDelay: 10, maxDelay: 40, factor: 2, jitter: 0 } });
  const delays = [];
  rb.on('reconnect', (r) => delays.push(r.delay));
  for (let i = 1; i <= 4; i++) {
    await waitUntil(() => FakeWebSocket.instances.length >= i);
    FakeWebSocket.instances[i - 1].serverClose(1006);
  }
  await waitUntil(() => delays.length >= 4);
  assert.deepEqual(delays.slice(0, 4), [10, 20, 40, 40]);
  const ws = await serve(5);
  assert.ok(ws);
  rb.close();
});

test('original call shape: explicit open, message(type, data), send(...).on(success|fail)', async () => {
  const rb = new Rainbow('ws://gw.test/connect/');
  rb.options.WebSocket = FakeWebSocket;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeWebSocket.instances.length, 0, 'no auto-open with only a URL');
  const opened = nextEvent(rb, 'open', 5000);
  rb.open();
  const ws = await serve(1, {}, ''); // an original (v1) gateway: no HELLO
  await opened;
  const got = [];
  rb.on('message', function (type, data) { got.push([type, data]); });
  ws.serverSend(hex(sendHex(0, 9, 0, '{"n":1}')));
  assert.deepEqual(got, [[9, '{"n":1}']]);

  const ok = await within(new Promise((resolve) => {
    const r = rb.send(1, { a: 1 }, 1, 5000);
    assert.equal(typeof r.then, 'function');
    r.on('success', resolve).on('fail', () => resolve('FAILED'));
    const id = (ws.sent[0][3] << 8) | ws.sent[0][4];
    assert.equal(ws.sentHex[0], sendHex(1, 1, id, '{"a":1}'));
    ws.serverSend(hex('20' + u16(id) + enc('{"ok":true}')));
  }), 5000, 'success');
  assert.equal(ok, '{"ok":true}');

  // a failure reported through .on('fail') only: no unhandled rejection
  const err = await within(new Promise((resolve) => {
    rb.send(2, { b: 1 }, 1, 30).on('fail', resolve);
  }), 5000, 'fail');
  assert.equal(err.code, 'ETIMEDOUT');
  // fire-and-forget in the original shape does not raise either
  rb.send(3, 'x', 2, 20);
  await new Promise((r) => setTimeout(r, 60));
  rb.close();
});

test('close(): pending sends and ready() are rejected, no reconnect', async () => {
  const rb = client();
  const waiting = rb.ready();
  const p = rb.send(1, 'x');
  rb.close();
  await assert.rejects(p, (e) => e.code === 'ECLOSED');
  await assert.rejects(waiting, (e) => e.code === 'ECLOSED');
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(FakeWebSocket.instances.length, 0, "closed before the socket was made");
});
