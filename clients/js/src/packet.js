// Rainbow packet codec (docs/protocol.md, "Packets").
//
// One packet per binary WebSocket message. The first byte is
//   command << 4 | DUP << 3 | QoS << 1
// followed by big-endian fields:
//   SEND QoS 0      msgtype:u16, payload
//   SEND QoS 1/2    msgtype:u16, msgid:u16, payload
//   ACK, REC        msgid:u16, payload (the reply, may be empty)
//   REL, COM        msgid:u16
//   NAK (v2)        msgid:u16, JSON {code, message, temporary}
//   HELLO (v2)      JSON {identity, session_present, heartbeat, max_message_size}

export const SEND = 1;
export const ACK = 2;
export const REC = 3;
export const REL = 4;
export const COM = 5;
export const NAK = 6;
export const HELLO = 7;

export const COMMAND_NAMES = ['?', 'SEND', 'ACK', 'REC', 'REL', 'COM', 'NAK', 'HELLO'];

const EMPTY = new Uint8Array(0);
const utf8enc = new TextEncoder();
const utf8dec = new TextDecoder('utf-8');

export function header(cmd, qos = 0, dup = false) {
  return (cmd << 4) | (dup ? 0x08 : 0) | ((qos & 3) << 1);
}

/** Bytes of a payload given by the application.
 *  Uint8Array (Buffer), ArrayBuffer, other views: the bytes as they are;
 *  string: UTF-8; null / undefined: empty; anything else: JSON text. */
export function toBytes(data) {
  if (data === undefined || data === null) return EMPTY;
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return utf8enc.encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const text = JSON.stringify(data);
  if (text === undefined) throw new TypeError('payload cannot be encoded as JSON');
  return utf8enc.encode(text);
}

export function utf8(bytes) {
  return utf8dec.decode(bytes);
}

function withHead(head, payload) {
  const out = new Uint8Array(head.length + payload.length);
  out.set(head, 0);
  out.set(payload, head.length);
  return out;
}

/** SEND: QoS 0 has no msgid. */
export function encodeSend(msgtype, payload, qos = 0, msgid = 0, dup = false) {
  payload = payload || EMPTY;
  if (qos === 0) {
    return withHead([header(SEND, 0, dup), msgtype >> 8, msgtype & 0xff], payload);
  }
  return withHead([header(SEND, qos, dup), msgtype >> 8, msgtype & 0xff, msgid >> 8, msgid & 0xff],
    payload);
}

/** ACK, REC (with a payload), REL, COM (without), NAK (JSON payload). */
export function encodeId(cmd, msgid, payload) {
  return withHead([header(cmd), msgid >> 8, msgid & 0xff], payload || EMPTY);
}

/** Size in bytes of a SEND packet carrying `payloadLength` bytes. */
export function sendSize(qos, payloadLength) {
  return (qos === 0 ? 3 : 5) + payloadLength;
}

/**
 * Decode one packet from the server. Returns
 * {cmd, dup, qos, msgtype, msgid, payload (Uint8Array view), raw}
 * or throws an Error saying what is wrong.
 */
export function decode(raw) {
  if (!(raw instanceof Uint8Array)) raw = toBytes(raw);
  if (raw.length < 1) throw new Error('empty packet');
  const b0 = raw[0];
  const cmd = b0 >> 4;
  const dup = (b0 & 0x08) !== 0;
  const qos = (b0 >> 1) & 3;
  if (qos === 3) throw new Error('QoS 3 in packet header');
  const p = { cmd, dup, qos, msgtype: undefined, msgid: undefined, payload: EMPTY, raw };
  switch (cmd) {
    case SEND: {
      const need = qos === 0 ? 3 : 5;
      if (raw.length < need) throw new Error('short SEND packet (' + raw.length + ' bytes)');
      p.msgtype = (raw[1] << 8) | raw[2];
      if (qos > 0) p.msgid = (raw[3] << 8) | raw[4];
      p.payload = raw.subarray(need);
      return p;
    }
    case ACK: case REC: case REL: case COM: case NAK:
      if (raw.length < 3) throw new Error('short ' + COMMAND_NAMES[cmd] + ' packet');
      p.msgid = (raw[1] << 8) | raw[2];
      p.payload = raw.subarray(3);
      return p;
    case HELLO:
      p.payload = raw.subarray(1);
      return p;
    default:
      throw new Error('unknown command ' + cmd);
  }
}
