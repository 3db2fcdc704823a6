// Against the real gateway and a real HTTP backend: request round trips at
// QoS 0/1/2, NAKs, timeouts, pushes at QoS 0/1/2 with the app's reply, the
// connect arguments, heartbeats, the original call shape.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Rainbow } from '../src/node.js';
import { setup, waitUntil, nextEvent, within, sleep, tappedWebSocket } from '../testlib/harness.mjs';

let env;
const RECONNECT = { minDelay: 100, maxDelay: 1000 };

before(async () => {
  // server pings every second (heartbeat = 1): every test also checks that
  // the client answers them and stays connected
  env = await setup({ heartbeat: 1, heartbeat_timeout: 10, backend_timeout: 2 });
});

after(async () => {
  if (env) await env.cleanup();
});

function open(opts = {}) {
  const rb = env.track(new Rainbow(env.gw.wsUrl(), Object.assign({ reconnect: RECONNECT }, opts)));
  return rb;
}

function closes(rb) {
  const list = [];
  rb.on('close', (c) => list.push(c));
  return list;
}

test('round trips at QoS 0, 1 and 2 (JSON)', async () => {
  const rb = open({ device: 'rt-1', json: true });
  const info = await within(rb.ready(), 15000, 'open');
  assert.equal(info.protocol, 'rainbow.v2');
  assert.match(info.identity, /^[0-9a-f]{64}$/);
  assert.equal(info.sessionPresent, false);
  assert.equal(info.maxMessageSize, 65536);

  assert.equal(await rb.send(10, { a: 0 }, { qos: 0 }), undefined);
  assert.deepEqual(await rb.send(11, { a: 1 }), { a: 1 });
  assert.deepEqual(await rb.send(12, { a: 2 }, { qos: 2 }), { a: 2 });
  assert.equal(rb.pending, 0);

  await waitUntil(() => env.backend.forwards(10).length === 1, 15000, 'the QoS 0 forward');
  const [f0] = env.backend.forwards(10);
  assert.equal(f0.method, 'POST');
  assert.equal(f0.body.toString(), '{"a":0}');
  assert.equal(f0.headers.rainbowqos, '0');
  const [f1] = env.backend.forwards(11);
  assert.equal(f1.headers.rainbowqos, '1');
  assert.match(f1.headers.rainbowmessageid, /^rt-1:\d+$/);
  const f2 = env.backend.forwards(12);
  assert.equal(f2.length, 1, 'QoS 2: one backend call');
  assert.equal(f2[0].headers.rainbowqos, '2');
  assert.equal(f2[0].headers.rainbowdup, undefined);
  assert.equal(f2[0].headers.rainbowclientidentity, info.identity);
});

test('replies as text (default), JSON per call, or bytes', async () => {
  env.backend.handler = (r) => (r.path === '/forward/20/' ? { status: 200, body: Buffer.from([0xff, 0x00, 0x41]) } : undefined);
  const rb = open();
  await within(rb.ready(), 15000, 'open');
  assert.equal(await rb.send(21, 'plain text'), 'plain text');
  assert.deepEqual(await rb.send(21, { j: [1, 2] }, { json: true }), { j: [1, 2] });
  assert.equal(await rb.send(21, '', { json: true }), null, 'empty reply as JSON: null');
  const bytes = await rb.send(20, 'x', { binary: true });
  assert.ok(bytes instanceof Uint8Array);
  assert.deepEqual([...bytes], [0xff, 0x00, 0x41]);
  env.backend.handler = null;
});

test('NAKs reject with the code, message and temporary flag', async () => {
  env.backend.handler = (r) => {
    if (r.path === '/forward/30/') return { status: 200, headers: { RAINBOWREQUESTINVALID: 'amount too large' }, body: '' };
    if (r.path === '/forward/31/') return { status: 500, body: 'boom' };
    if (r.path === '/forward/32/') return { status: 404, body: 'nope' };
    if (r.path === '/forward/33/') return sleep(4000).then(() => ({ status: 200, body: 'late' })); // backend_timeout is 2 s
    return undefined;
  };
  const rb = open({ json: true });
  await within(rb.ready(), 15000, 'open');
  const nak = async (p) => {
    try {
      await p;
    } catch (err) {
      return err;
    }
    throw new Error('resolved instead of a NAK');
  };
  let e = await nak(rb.send(30, { amount: 1e9 }));
  assert.deepEqual([e.name, e.code, e.message, e.temporary], ['NakError', 422, 'amount too large', false]);
  e = await nak(rb.send(30, { amount: 1e9 }, { qos: 2 }));
  assert.deepEqual([e.code, e.message, e.temporary], [422, 'amount too large', false]);
  e = await nak(rb.send(31, {}));
  assert.deepEqual([e.code, e.temporary], [502, true]);
  assert.equal(typeof e.message, 'string');
  e = await nak(rb.send(32, {}, { qos: 2 }));
  assert.deepEqual([e.code, e.temporary], [502, false]);
  e = await nak(rb.send(33, {}, { timeout: 20000 }));
  assert.deepEqual([e.code, e.temporary], [504, true]);
  assert.ok(e.nak && e.nak.code === 504, 'the NAK body is kept');

  // a failed QoS 0 send is NAKed with msgid 0: an 'error' event
  const errEvent = nextEvent(rb, 'error', 15000);
  await rb.send(31, { q: 0 }, { qos: 0 });
  e = await errEvent;
  assert.deepEqual([e.code, e.msgid, e.temporary], [502, 0, true]);
  env.backend.handler = null;
});

test('a send with no answer in time rejects with ETIMEDOUT', async () => {
  env.backend.handler = (r) => (r.path === '/forward/40/' ? null : undefined); // never answers
  const rb = open();
  await within(rb.ready(), 15000, 'open');
  await assert.rejects(rb.send(40, 'x', { timeout: 300 }), (e) => e.code === 'ETIMEDOUT' && e.name === 'TimeoutError');
  // the connection is fine afterwards
  assert.equal(await rb.send(41, 'y'), 'y');
  env.backend.handler = null;
});

test('pushes at QoS 0, 1 and 2: delivered once, answered with the handler\'s reply', async () => {
  const rb = open({ device: 'push-1', json: true });
  const info = await within(rb.ready(), 15000, 'open');
  const got = [];
  rb.on('message', (type, data, meta) => {
    got.push({ type, data, qos: meta.qos, dup: meta.dup });
    assert.ok(meta.raw instanceof Uint8Array && meta.payload instanceof Uint8Array);
    return { thanks: data.n };
  });
  let r = await env.gw.push({ identity: info.identity, msgtype: 1001, qos: 0 }, { n: 0 });
  assert.deepEqual(r.json, { status: 0, connections: 1 });
  r = await env.gw.push({ identity: info.identity, msgtype: 1002, qos: 1, timeout: 10 }, { n: 1 });
  assert.equal(r.json.status, 0, JSON.stringify(r.json));
  assert.equal(r.json.connections, 1);
  assert.deepEqual(JSON.parse(r.json.data), { thanks: 1 });
  r = await env.gw.push({ device: 'push-1', msgtype: 1003, qos: 2, timeout: 10 }, { n: 2 });
  assert.equal(r.json.status, 0, JSON.stringify(r.json));
  assert.deepEqual(JSON.parse(r.json.data), { thanks: 2 });
  await waitUntil(() => got.length >= 3, 15000, 'three pushes');
  assert.deepEqual(got, [
    { type: 1001, data: { n: 0 }, qos: 0, dup: false },
    { type: 1002, data: { n: 1 }, qos: 1, dup: false },
    { type: 1003, data: { n: 2 }, qos: 2, dup: false },
  ]);
});

test('connect: device, platform, session and token reach the connect hook', async () => {
  const rb = open({ device: 'hook-dev', platform: 'ios', token: () => Promise.resolve('jwt.abc.def'),
    session: true, query: { channel: 'room' } });
  const info = await within(rb.ready(), 15000, 'open');
  const hook = env.backend.connects().find((r) => r.headers.rainbowclientidentity === info.identity);
  assert.ok(hook, 'connect hook called');
  assert.equal(hook.headers['x-deviceid'], 'hook-dev');
  assert.equal(hook.headers['x-client-os'], 'ios');
  assert.equal(hook.headers.token, 'jwt.abc.def');
  assert.equal(hook.headers.session, '1');
  assert.equal(hook.headers.channel, 'room');
  assert.equal(hook.headers['sec-websocket-protocol'], 'rainbow.v2');
});

test('the original protocol (v2: false): round trip and push, failures are silent', async () => {
  const rb = open({ v2: false, json: true });
  const info = await within(rb.ready(), 15000, 'open');
  assert.equal(info.protocol, '');
  assert.equal(info.identity, null);
  assert.deepEqual(await rb.send(50, { v: 1 }, { qos: 2 }), { v: 1 });
  const hook = env.backend.connects().at(-1);
  const identity = hook.headers.rainbowclientidentity;
  const got = nextEvent(rb, 'message', 15000);
  const r = await env.gw.push({ identity, msgtype: 7, qos: 1 }, { p: 1 });
  assert.equal(r.json.connections, 1);
  assert.deepEqual(await got, 7);
  // a v1 client hears nothing when the backend fails: only the timeout tells
  env.backend.handler = (req) => (req.path === '/forward/51/' ? { status: 500, body: 'x' } : undefined);
  await assert.rejects(rb.send(51, {}, { timeout: 4000 }), (e) => e.code === 'ETIMEDOUT');
  assert.equal(env.backend.forwards(51).length, 1);
  env.backend.handler = null;
});

test('heartbeat: server pings are answered, client probes answered, nobody drops', async () => {
  // the gateway pings every second when idle; the client probes (WebSocket
  // ping with the ws package) after 300 ms without traffic
  const tap = await tappedWebSocket();
  const rb = open({ heartbeat: { interval: 300, timeout: 10000 }, WebSocket: tap.WebSocket });
  const cl = closes(rb);
  await within(rb.ready(), 15000, 'open');
  const ws = tap.last();
  let pings = 0;
  let pongs = 0;
  ws.on('ping', () => pings++);
  ws.on('pong', () => pongs++);
  await waitUntil(() => pings >= 2 && pongs >= 2, 20000, () => 'pings ' + pings + ', pongs ' + pongs);
  assert.deepEqual(cl, []);
  assert.equal(rb.state, 'open');
  assert.equal(tap.sockets.length, 1, 'one connection all along');
  assert.equal(await rb.send(60, 'still here'), 'still here');
});

test('heartbeat without WebSocket ping (as in browsers): REL probes answered by COM', async () => {
  const tap = await tappedWebSocket({ noPing: true });
  const rb = open({ heartbeat: { interval: 200, timeout: 10000 }, WebSocket: tap.WebSocket });
  const cl = closes(rb);
  await within(rb.ready(), 15000, 'open');
  const isRel = (b) => b.length === 3 && b[0] === 0x40;
  const coms = () => tap.frames.filter((b) => b.length === 3 && b[0] === 0x50
    && tap.out.some((o) => isRel(o) && o.readUInt16BE(1) === b.readUInt16BE(1)));
  await waitUntil(() => coms().length >= 3, 20000, () => coms().length + ' probes answered');
  assert.deepEqual(cl, []);
  assert.equal(tap.sockets.length, 1);
  assert.equal(rb._inflight.size, 0, 'answered probes free their ids');
  assert.equal(await rb.send(61, 'ok'), 'ok');
});

test('original call shape: new Rainbow(url), open(), on(message), send(...).on(success|fail)', async () => {
  env.backend.handler = (r) => (r.path === '/forward/71/'
    ? { status: 200, headers: { RAINBOWREQUESTINVALID: 'not allowed' } } : undefined);
  const rb = env.track(new Rainbow(env.gw.wsUrl()));
  assert.equal(rb.state, 'closed', 'no auto-open with only a URL');
  const opened = nextEvent(rb, 'open', 15000);
  rb.open();
  await opened;

  const reply = await within(new Promise((resolve, reject) => {
    rb.send(70, { hello: 'world' }, 1, 10000).on('success', resolve).on('fail', reject);
  }), 15000, 'success');
  assert.equal(reply, '{"hello":"world"}');

  const err = await within(new Promise((resolve) => {
    rb.send(71, { x: 1 }, 2, 10000).on('success', () => resolve(null)).on('fail', resolve);
  }), 15000, 'fail');
  assert.deepEqual([err.code, err.message], [422, 'not allowed']);

  const identity = rb.identity;
  const msg = new Promise((resolve) => rb.on('message', (type, data) => resolve([type, data])));
  await env.gw.push({ identity, msgtype: 5, qos: 1 }, '{"k":"v"}');
  assert.deepEqual(await within(msg, 15000, 'message'), [5, '{"k":"v"}']);

  const closed = nextEvent(rb, 'close', 15000);
  rb.close();
  assert.equal((await closed).code, 1000);
  env.backend.handler = null;
});

test('kicked (4000): close event without reconnect; open() reconnects', async () => {
  const rb = open();
  const info = await within(rb.ready(), 15000, 'open');
  const closed = nextEvent(rb, 'close', 15000);
  const k = await env.gw.rest('POST', '/kick/', {}, { identity: info.identity });
  assert.equal(k.json.status, 0, JSON.stringify(k.json));
  const c = await closed;
  assert.deepEqual([c.code, c.reconnecting], [4000, false]);
  assert.equal(rb.state, 'closed');
  rb.open();
  const again = await within(rb.ready(), 15000, 'open again');
  assert.notEqual(again.identity, info.identity);
});

test('a handshake that never completes: connect timeout, retries, close() mid-handshake (ws)', async (t) => {
  // a TCP server that accepts and never answers the upgrade
  const sockets = [];
  const srv = net.createServer((s) => sockets.push(s));
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  const url = 'ws://127.0.0.1:' + srv.address().port + '/connect/';
  const rb = env.track(new Rainbow(url, { connectTimeout: 200, reconnect: { minDelay: 20, maxDelay: 50 } }));
  const errors = [];
  rb.on('error', (e) => errors.push(e.message));
  await waitUntil(() => errors.filter((m) => m === 'connect timeout').length >= 2, 15000, 'two connect timeouts');
  await waitUntil(() => rb.state === 'connecting', 15000, 'a third attempt under way');
  rb.close(); // while the ws socket is still CONNECTING
  assert.equal(rb.state, 'closed');
  await sleep(200); // an uncaught 'error' from ws would fail the test run here
  assert.equal(rb.state, 'closed');
});
