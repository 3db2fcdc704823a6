// The codec against the verified examples of docs/protocol.md "Packets"
// (the same vectors as tests/unit/test_packet.c).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeSend, encodeId, decode, toBytes, SEND, ACK, REC, REL, COM, NAK, HELLO,
} from '../src/packet.js';
import { hex } from '../testlib/harness.mjs';

const h = (b) => Buffer.from(b).toString('hex');
const a = (n) => '{"a":' + n + '}';

test('client packets encode as the documented examples', () => {
  assert.equal(h(encodeSend(1, toBytes(a(0)), 0)), '10' + '0001' + '7b2261223a307d');
  assert.equal(h(encodeSend(2, toBytes(a(1)), 1, 10)), '12' + '0002' + '000a' + '7b2261223a317d');
  assert.equal(h(encodeSend(2, toBytes(a(1)), 1, 10, true)), '1a' + '0002' + '000a' + '7b2261223a317d');
  assert.equal(h(encodeSend(3, toBytes(a(2)), 2, 11)), '14' + '0003' + '000b' + '7b2261223a327d');
  assert.equal(h(encodeSend(3, toBytes(a(2)), 2, 11, true)), '1c' + '0003' + '000b' + '7b2261223a327d');
  assert.equal(h(encodeId(REL, 11)), '40000b');
  assert.equal(h(encodeId(ACK, 1)), '200001');
  assert.equal(h(encodeId(COM, 0xabcd)), '50abcd');
  assert.equal(h(encodeSend(0xfffe, toBytes(''), 0)), '10fffe');
});

test('server packets decode as the documented examples', () => {
  let p = decode(hex('20 000a 7b2261223a317d'));
  assert.deepEqual([p.cmd, p.msgid, Buffer.from(p.payload).toString()], [ACK, 10, a(1)]);
  p = decode(hex('30 000b 7b2261223a327d'));
  assert.deepEqual([p.cmd, p.msgid, Buffer.from(p.payload).toString()], [REC, 11, a(2)]);
  p = decode(hex('50 000b'));
  assert.deepEqual([p.cmd, p.msgid, p.payload.length], [COM, 11, 0]);
  p = decode(hex('12 03ea 0001 7b226d223a317d'));
  assert.deepEqual([p.cmd, p.qos, p.dup, p.msgtype, p.msgid, Buffer.from(p.payload).toString()],
    [SEND, 1, false, 1002, 1, '{"m":1}']);
  p = decode(hex('1c 0003 000b'));
  assert.deepEqual([p.cmd, p.qos, p.dup, p.msgtype, p.msgid, p.payload.length], [SEND, 2, true, 3, 11, 0]);
  p = decode(hex('10 fffe'));
  assert.deepEqual([p.cmd, p.qos, p.msgtype, p.msgid], [SEND, 0, 0xfffe, undefined]);
  p = decode(hex('60 0000 7b22636f6465223a3430307d'));
  assert.deepEqual([p.cmd, p.msgid, Buffer.from(p.payload).toString()], [NAK, 0, '{"code":400}']);
  p = decode(hex('70 7b7d'));
  assert.deepEqual([p.cmd, Buffer.from(p.payload).toString()], [HELLO, '{}']);
});

test('malformed packets are refused', () => {
  for (const bad of ['', '12 0002 00', '14 0003 00', '10 00', '20 00', '30 00', '40', '50', '60 00', '16 0001 0001', '80 0001', '00']) {
    assert.throws(() => decode(hex(bad)), Error, 'accepted ' + bad);
  }
});

test('payloads: bytes as they are, strings as UTF-8, the rest as JSON', () => {
  assert.equal(h(toBytes(Uint8Array.of(1, 2))), '0102');
  assert.equal(h(toBytes(Uint8Array.of(1, 2, 3).buffer)), '010203');
  assert.equal(h(toBytes(Buffer.from('ff', 'hex'))), 'ff');
  assert.equal(Buffer.from(toBytes('é')).toString(), 'é');
  assert.equal(Buffer.from(toBytes({ x: [1] })).toString(), '{"x":[1]}');
  assert.equal(Buffer.from(toBytes(5)).toString(), '5');
  assert.equal(toBytes(null).length, 0);
  assert.equal(toBytes(undefined).length, 0);
});
