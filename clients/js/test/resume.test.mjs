// Reconnect and session resume against the real gateway: restarts (SIGTERM
// and SIGKILL) with nothing lost, sends queued while away flushed in order,
// in-flight sends retransmitted with DUP, a push queued for the device
// delivered after resume, DUP redeliveries seen once, takeover (4409).
// Each test has its own gateway (they are stopped and restarted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rainbow } from '../src/node.js';
import { setup, waitUntil, nextEvent, within, tappedWebSocket } from '../testlib/harness.mjs';

const RECONNECT = { minDelay: 100, maxDelay: 500 };

function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

test('gateway restart (SIGTERM): queued sends delivered in order, the push made while away arrives', async (t) => {
  const env = await setup();
  t.after(() => env.cleanup());
  // The token function runs before every connection attempt: holding it
  // keeps the client away for as long as the test needs, without timing.
  let gate = null;
  const rb = env.track(new Rainbow(env.gw.wsUrl(), {
    device: 'dev-restart', json: true, reconnect: RECONNECT,
    token: async () => { if (gate) await gate.promise; return 'tok'; },
  }));
  const first = await within(rb.ready(), 15000, 'open');
  assert.equal(first.sessionPresent, false);
  assert.deepEqual(await rb.send(100, { i: -1 }), { i: -1 });
  const got = [];
  rb.on('message', (type, data, meta) => { got.push({ type, data, qos: meta.qos }); });

  gate = deferred();
  const closed = nextEvent(rb, 'close', 20000);
  const exit = await env.gw.stop('SIGTERM');
  assert.deepEqual(exit, { code: 0, signal: null });
  const c = await closed;
  assert.equal(c.code, 1001, 'the gateway closes with 1001 when it shuts down');
  assert.equal(c.reconnecting, true);

  // while the gateway is down: five sends, QoS 1, 2, 0, 1, 2
  const qos = [1, 2, 0, 1, 2];
  const sends = qos.map((q, i) => rb.send(100, { i }, { qos: q, timeout: 60000 }));
  assert.equal(rb.pending, 5);
  assert.equal(rb.state, 'reconnecting');

  await env.gw.restart();
  // the client is still away (held in token()): a QoS 1 push waits in its session
  const r = await env.gw.push({ device: 'dev-restart', msgtype: 900, qos: 1, timeout: 1 }, { offline: 1 });
  assert.equal(r.json.status, 0, JSON.stringify(r.json));
  assert.equal(r.json.pending, 1, JSON.stringify(r.json));

  const reopened = nextEvent(rb, 'open', 20000);
  gate.resolve();
  const info = await reopened;
  assert.equal(info.sessionPresent, true);
  assert.equal(info.reconnected, true);

  const replies = await within(Promise.all(sends), 30000, 'the queued sends');
  assert.deepEqual(replies, [{ i: 0 }, { i: 1 }, undefined, { i: 3 }, { i: 4 }]);
  const order = env.backend.forwards(100).map((f) => JSON.parse(f.body).i);
  assert.deepEqual(order, [-1, 0, 1, 2, 3, 4], 'the backend got them in call order, once each');

  await waitUntil(() => got.length >= 1, 20000, 'the push queued while away');
  assert.deepEqual(got, [{ type: 900, data: { offline: 1 }, qos: 1 }]);
  assert.equal(rb.pending, 0);
});

test('gateway killed (SIGKILL) mid-request: in-flight QoS 1 and 2 sends are retransmitted with DUP', async (t) => {
  const env = await setup({ backend_timeout: 60 });
  t.after(() => env.cleanup());
  // the first copies are never answered; the retransmissions are
  let firstSeen = 0;
  env.backend.handler = (r) => {
    if (r.path !== '/forward/200/') return undefined;
    if (r.headers.rainbowdup === '1') return { status: 200, body: 'done:' + r.body };
    firstSeen++;
    return null;
  };
  const rb = env.track(new Rainbow(env.gw.wsUrl(), { device: 'dev-kill', reconnect: RECONNECT }));
  rb.on('error', () => {}); // connection refused while the gateway is down
  await within(rb.ready(), 15000, 'open');
  const p1 = rb.send(200, 'one', { qos: 1, timeout: 60000 });
  const p2 = rb.send(200, 'two', { qos: 2, timeout: 60000 });
  await waitUntil(() => firstSeen >= 1, 15000, 'the first forward');
  const closed = nextEvent(rb, 'close', 20000);
  await env.gw.stop('SIGKILL');
  assert.equal((await closed).reconnecting, true);
  await env.gw.restart();
  assert.deepEqual(await within(Promise.all([p1, p2]), 30000, 'the retransmitted sends'),
    ['done:one', 'done:two']);
  const fw = env.backend.forwards(200);
  const dups = fw.filter((r) => r.headers.rainbowdup === '1');
  assert.deepEqual(dups.map((r) => r.body.toString()).sort(), ['one', 'two']);
  // the retransmission of 'one' carries the same message id as the first copy
  const one = fw.filter((r) => r.body.toString() === 'one');
  assert.equal(one[0].headers.rainbowmessageid, one.at(-1).headers.rainbowmessageid);
  assert.match(one[0].headers.rainbowmessageid, /^dev-kill:\d+$/);
});

test('a QoS 2 push retransmitted with DUP (no REC yet) reaches the app once', async (t) => {
  const env = await setup({ retry_interval: 1 });
  t.after(() => env.cleanup());
  const tap = await tappedWebSocket();
  const rb = env.track(new Rainbow(env.gw.wsUrl(), { device: 'dev-dup2', WebSocket: tap.WebSocket, reconnect: RECONNECT }));
  await within(rb.ready(), 15000, 'open');
  const release = deferred();
  const seen = [];
  rb.on('message', (type, data, meta) => {
    seen.push({ data, msgid: meta.msgid });
    return release.promise; // the REC waits for the app's reply
  });
  const push = env.gw.push({ device: 'dev-dup2', msgtype: 3, qos: 2, timeout: 30 }, 'exactly-once');
  await waitUntil(() => seen.length === 1, 15000, 'the push');
  const { msgid } = seen[0];
  // the gateway retransmits every retry_interval until REC
  await waitUntil(() => tap.sends(msgid).some((b) => b[0] & 0x08), 20000, 'a DUP copy');
  assert.equal(seen.length, 1);
  release.resolve('reply-from-app');
  const r = await push;
  assert.equal(r.json.status, 0, JSON.stringify(r.json));
  assert.equal(r.json.data, 'reply-from-app');
  // REL from the gateway is answered with COM
  const rel = Buffer.from([0x40, msgid >> 8, msgid & 0xff]);
  const com = Buffer.from([0x50, msgid >> 8, msgid & 0xff]);
  await waitUntil(() => tap.frames.some((b) => b.equals(rel)) && tap.out.some((b) => b.equals(com)),
    15000, 'REL -> COM');
  assert.equal(seen.length, 1);
});

test('a QoS 1 push resent with DUP after the connection dropped (session resume) reaches the app once', async (t) => {
  const env = await setup({ retry_interval: 1 });
  t.after(() => env.cleanup());
  const tap = await tappedWebSocket();
  const rb = env.track(new Rainbow(env.gw.wsUrl(), { device: 'dev-dup1', WebSocket: tap.WebSocket, reconnect: RECONNECT }));
  await within(rb.ready(), 15000, 'open');
  const release = deferred();
  const seen = [];
  rb.on('message', (type, data, meta) => {
    seen.push({ data, msgid: meta.msgid });
    return release.promise;
  });
  const push = env.gw.push({ device: 'dev-dup1', msgtype: 4, qos: 1, timeout: 30 }, 'at-least-once');
  await waitUntil(() => seen.length === 1, 15000, 'the push');
  const { msgid } = seen[0];
  const reopened = nextEvent(rb, 'open', 20000);
  tap.sockets[0].terminate(); // the network drops the connection before the ACK
  const info = await reopened;
  assert.equal(info.sessionPresent, true);
  await waitUntil(() => tap.sends(msgid).some((b) => b[0] & 0x08), 20000, 'the DUP copy after resume');
  assert.equal(seen.length, 1);
  release.resolve('ack-reply');
  const ack = Buffer.concat([Buffer.from([0x20, msgid >> 8, msgid & 0xff]), Buffer.from('ack-reply')]);
  await waitUntil(() => tap.out.some((b) => b.equals(ack)), 15000, 'the ACK');
  const r = await push;
  assert.equal(r.json.status, 0, JSON.stringify(r.json));
  assert.equal(r.json.connections + r.json.pending, 1, JSON.stringify(r.json));
  assert.equal(seen.length, 1);
});

test('session taken over (4409): the older client stops instead of fighting back', async (t) => {
  const env = await setup();
  t.after(() => env.cleanup());
  const a = env.track(new Rainbow(env.gw.wsUrl(), { device: 'dev-twin', reconnect: RECONNECT }));
  await within(a.ready(), 15000, 'a open');
  const aClosed = nextEvent(a, 'close', 20000);
  const b = env.track(new Rainbow(env.gw.wsUrl(), { device: 'dev-twin', reconnect: RECONNECT }));
  const infoB = await within(b.ready(), 15000, 'b open');
  assert.equal(infoB.sessionPresent, true);
  const c = await aClosed;
  assert.deepEqual([c.code, c.reason, c.reconnecting], [4409, 'session taken over', false]);
  assert.equal(a.state, 'closed');
  assert.equal(await b.send(1, 'b works'), 'b works');
});

test('a new client of a device is not answered with the reply an earlier one left under the same QoS 2 id', async (t) => {
  const env = await setup();
  t.after(() => env.cleanup());
  // client A: REC arrives, but its REL never reaches the gateway (the page
  // was closed): the gateway keeps A's reply under (device, id)
  const tapA = await tappedWebSocket();
  const a = env.track(new Rainbow(env.gw.wsUrl(), { device: 'dev-reuse', WebSocket: tapA.WebSocket, reconnect: false }));
  await within(a.ready(), 15000, 'a open');
  tapA.dropOut = (b) => b[0] === 0x40;
  const pa = a.send(300, 'first', { qos: 2 });
  pa.catch(() => {});
  await waitUntil(() => tapA.out.some((b) => b[0] === 0x14), 15000, 'A\'s SEND');
  const sendA = tapA.out.find((b) => b[0] === 0x14);
  const id = sendA.readUInt16BE(3);
  await waitUntil(() => tapA.frames.some((b) => b[0] === 0x30 && b.readUInt16BE(1) === id), 15000, 'REC for A');
  a.close();
  // client B, same device, happens to pick the same id
  const b = env.track(new Rainbow(env.gw.wsUrl(), { device: 'dev-reuse', reconnect: false }));
  b._nextId = id; // white box: force the collision
  const info = await within(b.ready(), 15000, 'b open');
  assert.equal(info.sessionPresent, true);
  assert.equal(await b.send(300, 'second', { qos: 2 }), 'second');
  assert.deepEqual(env.backend.forwards(300).map((f) => f.body.toString()), ['first', 'second']);
});

test('a frozen gateway (SIGSTOP) is detected by the heartbeat; the client resumes once it is back', async (t) => {
  const env = await setup();
  t.after(() => env.cleanup());
  const rb = env.track(new Rainbow(env.gw.wsUrl(), {
    device: 'dev-frozen', reconnect: RECONNECT, connectTimeout: 2000,
    heartbeat: { interval: 300, timeout: 2000 },
  }));
  const errors = [];
  rb.on('error', (e) => errors.push(e.message));
  await within(rb.ready(), 15000, 'open');
  const closed = nextEvent(rb, 'close', 30000);
  env.gw.proc.kill('SIGSTOP');
  let c;
  try {
    c = await closed;
  } finally {
    env.gw.proc.kill('SIGCONT');
  }
  assert.equal(c.reconnecting, true);
  assert.match(c.reason, /heartbeat/);
  const info = await within(rb.ready(), 30000, 'open again');
  assert.equal(info.sessionPresent, true);
  assert.equal(await rb.send(1, 'back'), 'back');
  assert.ok(errors.some((m) => /heartbeat/.test(m)), errors.join('; '));
});
