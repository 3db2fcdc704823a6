// Rainbow client: one WebSocket to a Rainbow gateway (docs/protocol.md).
//
// Requests: send(type, data, {qos, timeout}) -> Promise of the backend's reply
//   QoS 0: SEND, resolved once written;
//   QoS 1: SEND -> ACK(reply);
//   QoS 2: SEND -> REC(reply), REL -> COM, resolved with the reply at COM.
//   A NAK (rainbow.v2) rejects with a RainbowError {code, message, temporary}.
// Pushes: 'message' listeners get (msgType, data, meta); QoS 1 is answered
//   with ACK, QoS 2 with REC then COM on REL, each message reaching the
//   application once (QoS 2 by msgid until REL, QoS 1 DUP copies within
//   dedupWindow).
// Connection: reconnect with jittered exponential backoff; rainbow.v2 HELLO;
//   session resume (device id); sends queued while away are written in call
//   order on reconnect, in-flight QoS 1/2 sends are retransmitted with DUP and
//   pending RELs repeated; heartbeat probes when nothing has been received
//   for a while.

import { Emitter } from './emitter.js';
import {
  SEND, ACK, REC, REL, COM, NAK, HELLO,
  encodeSend, encodeId, decode, toBytes, utf8, sendSize,
} from './packet.js';

export const VERSION = '0.1.0';
export const SUBPROTOCOL = 'rainbow.v2';

const EMPTY = new Uint8Array(0);
const DEFAULTS = {
  v2: true,
  json: false,
  timeout: 10000,
  connectTimeout: 10000,
  maxMessageSize: 65536,
  dedupWindow: 3600000,
};
const RECONNECT_DEFAULTS = { minDelay: 500, maxDelay: 20000, factor: 2, jitter: 0.5 };
const HEARTBEAT_DEFAULT_INTERVAL = 25000;
const HEARTBEAT_DEFAULT_TIMEOUT = 10000;

// WebSocket readyState
const WS_OPEN = 1;

function noop() {}

/** Error of a request or of the connection. NAK errors have a numeric
 *  `code` (400, 422, 429, 502, 503, 504...), local ones a string code. */
export class RainbowError extends Error {
  constructor(message, props) {
    super(message);
    this.name = 'RainbowError';
    this.code = undefined;
    this.temporary = false;
    if (props) Object.assign(this, props);
  }
}

function nakError(msgid, body) {
  let info;
  try {
    info = JSON.parse(utf8(body));
  } catch (e) {
    info = { code: 0, message: 'NAK with an unreadable body', temporary: false };
  }
  if (!info || typeof info !== 'object') info = {};
  const err = new RainbowError(typeof info.message === 'string' && info.message
    ? info.message : 'request refused (NAK)', {
    name: 'NakError',
    code: typeof info.code === 'number' ? info.code : 0,
    temporary: info.temporary === true,
    msgid,
    nak: info,
  });
  if (typeof info.retry_after === 'number') err.retryAfter = info.retry_after;
  return err;
}

function localError(code, message, extra) {
  return new RainbowError(message, Object.assign({
    name: code === 'ETIMEDOUT' ? 'TimeoutError' : 'RainbowError',
    code,
    temporary: code === 'ETIMEDOUT' || code === 'ECLOSED',
  }, extra));
}

/** Payload as the application sees it. */
function decodePayload(bytes, how) {
  if (how === 'binary') return bytes;
  const text = utf8(bytes);
  if (how !== 'json') return text;
  if (!bytes.length) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    return text;
  }
}

/** 32-bit FNV-1a of msgtype and payload: tells two pushes with one msgid apart. */
function signature(msgtype, payload) {
  let h = 0x811c9dc5;
  h = Math.imul(h ^ (msgtype >> 8), 0x01000193);
  h = Math.imul(h ^ (msgtype & 0xff), 0x01000193);
  for (let i = 0; i < payload.length; i++) h = Math.imul(h ^ payload[i], 0x01000193);
  return ((h >>> 0) * 65536 + (payload.length & 0xffff));
}

function toUint8(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) { // ws with binaryType 'fragments'
    let n = 0;
    for (const c of data) n += c.length;
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of data) { out.set(c, o); o += c.length; }
    return out;
  }
  if (typeof data === 'string') return toBytes(data); // text frame (not sent by the gateway)
  return null;
}

/** A Promise that is also an emitter of 'success' (reply) and 'fail' (error),
 *  the original SDK's call shape. */
function sendPromise() {
  let resolve;
  let reject;
  const p = new Promise((res, rej) => { resolve = res; reject = rej; });
  const listeners = { success: [], fail: [] };
  let outcome = null;
  // listeners run asynchronously (after the promise's own callbacks would
  // be queued), never inside the client's own bookkeeping
  const fire = (l) => {
    Promise.resolve().then(() => l(outcome.value)).catch((err) => {
      setTimeout(() => { throw err; }, 0);
    });
  };
  p.on = (event, fn) => {
    if (!listeners[event]) throw new TypeError('unknown event ' + event + " (use 'success' or 'fail')");
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    if (event === 'fail') p.catch(noop); // observed: no unhandled rejection
    if (outcome) {
      if ((event === 'success') === outcome.ok) fire(fn);
    } else {
      listeners[event].push(fn);
    }
    return p;
  };
  p.once = p.on;
  p.off = (event, fn) => {
    const list = listeners[event];
    if (list) {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }
    return p;
  };
  const settle = (ok, value) => {
    if (outcome) return;
    outcome = { ok, value };
    if (ok) resolve(value); else reject(value);
    for (const l of listeners[ok ? 'success' : 'fail']) fire(l);
    listeners.success = [];
    listeners.fail = [];
  };
  return { promise: p, settle };
}

function isNumber(x) {
  return typeof x === 'number' && !Number.isNaN(x);
}

export class Rainbow extends Emitter {
  /**
   * new Rainbow(url, options?)
   * With only a URL (the original SDK's call shape) the client waits for
   * open(); with options it opens at once unless `autoOpen: false`.
   */
  constructor(url, options) {
    super();
    if (typeof url !== 'string' && !(url && typeof url.href === 'string')) {
      throw new TypeError('Rainbow: url must be a string (ws://host:1984/connect/)');
    }
    this.url = String(url.href || url).replace(/^http(s?):/i, 'ws$1:');
    if (!/^wss?:\/\/[^/]/i.test(this.url)) {
      throw new TypeError('Rainbow: not a ws:// or wss:// URL: ' + this.url);
    }
    const o = Object.assign({}, DEFAULTS, options || {});
    this.options = o;
    this.json = !!o.json;
    this.v2 = o.v2 !== false;
    this.timeout = isNumber(o.timeout) ? o.timeout : DEFAULTS.timeout;
    this.maxMessageSize = o.maxMessageSize;
    this._reconnect = o.reconnect === false ? null
      : Object.assign({}, RECONNECT_DEFAULTS, o.reconnect === true ? {} : o.reconnect || {});
    if (o.heartbeat === false || o.heartbeat === 0) this._heartbeat = null;
    else if (isNumber(o.heartbeat)) this._heartbeat = { interval: o.heartbeat };
    else this._heartbeat = Object.assign({}, o.heartbeat || {});

    this.state = 'closed';      // closed | connecting | open | reconnecting
    this.identity = null;       // from HELLO (rainbow.v2)
    this.sessionPresent = false;
    this.hello = null;          // HELLO's JSON (rainbow.v2)
    this.protocol = null;       // 'rainbow.v2' or '' (original protocol)

    this._ws = null;
    this._gen = 0;              // bumps on every connect/close: stale callbacks check it
    this._attempt = 0;
    this._everOpened = false;
    this._timers = { reconnect: null, connect: null, heartbeat: null };
    this._lastRx = 0;
    this._probeAt = 0;
    this._seq = 0;
    this._outbox = new Map();   // seq -> send entry, in call order, until settled
    this._inflight = new Map(); // msgid -> send entry / {cleanup} / {probe}
    this._nextId = 1 + Math.floor(Math.random() * 65535);
    this._in1 = new Map();      // QoS 1 pushes seen: msgid -> {sig, time, reply}
    this._in2 = new Map();      // QoS 2 pushes until REL: msgid -> {sig, time, reply}
    // QoS 2 ids this object has released on the gateway (see _writeEntry)
    this._released = new Uint8Array(8192);
    this._inherited = null;     // did the first connection find an existing session?
    this._sweepAt = 0;
    this._readyWaiters = [];

    const autoOpen = o.autoOpen !== undefined ? !!o.autoOpen : options !== undefined;
    if (autoOpen) this.open();
  }

  // ------------------------------------------------------------ public API

  /** Connect (again). Does nothing while connecting or connected; while
   *  waiting to reconnect, connects now. Returns this. */
  open() {
    if (this.state === 'connecting' || this.state === 'open') return this;
    this._clearTimer('reconnect');
    this._closedByUser = false;
    this._connect();
    return this;
  }

  /** Resolves with the open info once connected (at once if connected);
   *  rejects if the client is closed for good first. */
  ready() {
    if (this.state === 'open') return Promise.resolve(this._openInfo);
    return new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
  }

  /** Close for good (no reconnect). Sends not yet settled are rejected
   *  (code 'ECLOSED'). open() connects again. */
  close(code = 1000, reason = '') {
    this._closedByUser = true;
    this._gen++;
    this._clearTimer('reconnect');
    const ws = this._ws;
    const was = this.state;
    this.state = 'closed';
    if (ws) {
      this._teardownSocket();
      try { ws.close(code, reason); } catch (e) { try { ws.close(); } catch (e2) { /* gone */ } }
    }
    this._failAll(localError('ECLOSED', 'client closed', { temporary: false }));
    this._rejectReady(localError('ECLOSED', 'client closed', { temporary: false }));
    if (was === 'open' || was === 'connecting' || was === 'reconnecting') {
      this.emit('close', { code, reason, wasClean: true, reconnecting: false, byClient: true });
    }
    return this;
  }

  /**
   * send(msgType, data, {qos = 1, timeout, json, binary}) -> Promise of the reply.
   * Original shape: send(msgType, data, qos, timeoutMs); the result also has
   * .on('success', fn(reply)) and .on('fail', fn(err)).
   */
  send(msgType, data, opts, legacyTimeout) {
    const { promise, settle } = sendPromise();
    let qos = 1;
    let timeout = this.timeout;
    let decodeHow = this.json ? 'json' : 'text';
    if (isNumber(opts) || isNumber(legacyTimeout)) {
      // original call shape: failures are reported through .on('fail'), so
      // an unobserved failure must not become an unhandled rejection
      promise.catch(noop);
      if (isNumber(opts)) qos = opts;
      if (isNumber(legacyTimeout)) timeout = legacyTimeout;
    } else if (opts && typeof opts === 'object') {
      if (opts.qos !== undefined) qos = opts.qos;
      if (opts.timeout !== undefined) timeout = opts.timeout;
      if (opts.json !== undefined) decodeHow = opts.json ? 'json' : 'text';
      if (opts.binary) decodeHow = 'binary';
    }
    const fail = (err) => {
      Promise.resolve().then(() => settle(false, err));
      return promise;
    };
    if (!Number.isInteger(msgType) || msgType < 0 || msgType > 65535) {
      return fail(new TypeError('msgType must be an integer in 0..65535'));
    }
    if (qos !== 0 && qos !== 1 && qos !== 2) return fail(new TypeError('qos must be 0, 1 or 2'));
    let payload;
    try {
      payload = toBytes(data);
      // bytes given by the caller are copied: a retransmission must carry
      // what was sent even if the caller reuses its buffer
      if (payload === data || (typeof data === 'object' && data !== null && payload.buffer === (data.buffer || data))) {
        payload = payload.slice();
      }
    } catch (err) {
      return fail(err);
    }
    if (sendSize(qos, payload.length) > this.maxMessageSize) {
      return fail(localError('EMSGSIZE', 'message of ' + sendSize(qos, payload.length)
        + ' bytes is over the gateway\'s max_message_size (' + this.maxMessageSize + ')',
      { temporary: false }));
    }
    const e = {
      seq: ++this._seq, type: msgType, qos, payload, decodeHow,
      state: 'queued', msgid: 0, reply: null, timer: null, settle,
    };
    this._outbox.set(e.seq, e);
    if (isNumber(timeout) && timeout > 0 && timeout !== Infinity) {
      e.timer = setTimeout(() => this._onSendTimeout(e, timeout), timeout);
    }
    if (this.state === 'open') this._writeEntry(e, false);
    return promise;
  }

  /** Number of sends not settled yet (queued or awaiting their answer). */
  get pending() {
    return this._outbox.size;
  }

  // ------------------------------------------------------------ connection

  static loadWebSocket() {
    return globalThis.WebSocket;
  }

  async _resolveWebSocket() {
    const ctor = this.options.WebSocket || await this.constructor.loadWebSocket();
    if (typeof ctor !== 'function') {
      throw new RainbowError('no WebSocket implementation: pass options.WebSocket'
        + ' (in Node.js, install the ws package)', { code: 'ENOWEBSOCKET' });
    }
    return ctor;
  }

  async _buildUrl() {
    const o = this.options;
    const q = [];
    if (o.device !== undefined && o.device !== null) q.push(['X-DEVICEID', o.device]);
    if (o.platform !== undefined && o.platform !== null) q.push(['X-CLIENT-OS', o.platform]);
    if (o.session) q.push(['session', '1']);
    if (o.token !== undefined && o.token !== null) {
      const t = typeof o.token === 'function' ? await o.token() : o.token;
      if (t !== undefined && t !== null && t !== '') q.push(['token', t]);
    }
    if (o.query) {
      for (const k of Object.keys(o.query)) {
        if (o.query[k] !== undefined && o.query[k] !== null) q.push([k, o.query[k]]);
      }
    }
    if (!q.length) return this.url;
    const enc = q.map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(String(v)));
    const [base, frag] = this.url.split('#');
    return base + (base.includes('?') ? (base.endsWith('?') || base.endsWith('&') ? '' : '&') : '?')
      + enc.join('&') + (frag !== undefined ? '#' + frag : '');
  }

  _connect() {
    const gen = ++this._gen;
    this.state = 'connecting';
    (async () => {
      const WS = await this._resolveWebSocket();
      const url = await this._buildUrl();
      if (gen !== this._gen) return;
      const protocols = this.v2 ? [SUBPROTOCOL] : undefined;
      const ws = this.options.wsOptions
        ? new WS(url, protocols || [], this.options.wsOptions)
        : (protocols ? new WS(url, protocols) : new WS(url));
      this._attach(ws, gen);
    })().catch((err) => {
      if (gen !== this._gen) return;
      this.emit('error', err);
      this._lost(1006, String(err && err.message || err), false);
    });
  }

  _attach(ws, gen) {
    this._ws = ws;
    try { ws.binaryType = 'arraybuffer'; } catch (e) { /* read-only: handled in toUint8 */ }
    this._setTimer('connect', this.options.connectTimeout, () => {
      if (gen === this._gen && this.state === 'connecting') this._abandon('connect timeout');
    });
    ws.onopen = () => {
      if (ws !== this._ws) return;
      this._lastRx = Date.now();
      this.protocol = ws.protocol || '';
      if (this.protocol !== SUBPROTOCOL) this._ready(null); // original protocol: no HELLO
    };
    ws.onmessage = (ev) => {
      if (ws === this._ws) this._onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws !== this._ws) return;
      this._teardownSocket();
      this._lost(ev.code, ev.reason || '', ev.wasClean);
    };
    ws.onerror = (ev) => {
      if (ws !== this._ws) return;
      const err = ev && ev.error instanceof Error ? ev.error
        : new RainbowError((ev && ev.message) || 'WebSocket error', { code: 'EWEBSOCKET' });
      this.emit('error', err);
    };
    if (typeof ws.on === 'function') { // the ws package: pings and pongs are signs of life
      const touch = () => { if (ws === this._ws) this._alive(); };
      ws.on('ping', touch);
      ws.on('pong', touch);
    }
  }

  /** Stop listening to the current socket (it is being replaced or closed). */
  _teardownSocket() {
    const ws = this._ws;
    this._ws = null;
    this._clearTimer('connect');
    this._clearTimer('heartbeat');
    this._probeAt = 0;
    for (const [id, e] of this._inflight) if (e.probe) this._inflight.delete(id);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = null;
      ws.onclose = null;
      // the ws package emits 'error' when a socket still connecting is
      // closed or terminated; without a listener that would be thrown
      if (typeof ws.on === 'function') ws.on('error', noop);
    }
  }

  /** Give up on a socket that does not answer: drop it and go on as if closed. */
  _abandon(reason) {
    const ws = this._ws;
    this._teardownSocket();
    if (ws) {
      try {
        if (typeof ws.terminate === 'function') ws.terminate();
        else ws.close(4000, reason);
      } catch (e) { /* already gone */ }
    }
    this.emit('error', localError('ETIMEDOUT', reason));
    this._lost(1006, reason, false);
  }

  /** The connection is gone (or an attempt failed): report, then reconnect or stop. */
  _lost(code, reason, wasClean) {
    const wasOpen = this.state === 'open';
    if (this._closedByUser) return;
    // 4000..4499: kicked (4000), refused (4401), session taken over (4409):
    // the server wants this client away; reconnecting would fight it.
    const final = !this._reconnect || (code >= 4000 && code <= 4499);
    this.state = final ? 'closed' : 'reconnecting';
    if (wasOpen || final) {
      this.emit('close', { code, reason, wasClean: !!wasClean, reconnecting: !final });
    }
    if (final) {
      const err = localError('ECLOSED', 'connection closed (' + code + (reason ? ' ' + reason : '') + ')',
        { temporary: false, closeCode: code });
      this._failAll(err);
      this._rejectReady(err);
      return;
    }
    const r = this._reconnect;
    this._attempt++;
    const base = Math.min(r.maxDelay, r.minDelay * Math.pow(r.factor, this._attempt - 1));
    const delay = Math.max(0, Math.round(base * (1 - r.jitter * Math.random())));
    this.emit('reconnect', { attempt: this._attempt, delay, code, reason });
    if (this.state !== 'reconnecting') return; // a listener called close() or open()
    this._setTimer('reconnect', delay, () => {
      if (this.state === 'reconnecting') this._connect();
    });
  }

  _ready(hello) {
    if (this.state !== 'connecting') return;
    this._clearTimer('connect');
    this.hello = hello;
    if (hello) {
      this.identity = typeof hello.identity === 'string' ? hello.identity : null;
      this.sessionPresent = hello.session_present === true;
      if (isNumber(hello.max_message_size) && hello.max_message_size > 0) {
        this.maxMessageSize = hello.max_message_size;
      }
    } else {
      this.identity = null;
      this.sessionPresent = false;
    }
    // Without a resumed session the server forgot the QoS 2 pushes it had
    // not released: their msgids mean nothing any more.
    const mayResume = hello ? this.sessionPresent : !!(this.options.session && this.options.device);
    if (!mayResume) this._in2.clear();
    if (this._inherited === null) this._inherited = mayResume;
    const reconnected = this._everOpened;
    this._everOpened = true;
    this._attempt = 0;
    this.state = 'open';
    this._flush();
    this._startHeartbeat(hello && isNumber(hello.heartbeat) ? hello.heartbeat : undefined);
    this._openInfo = {
      identity: this.identity,
      sessionPresent: this.sessionPresent,
      protocol: this.protocol,
      heartbeat: hello ? hello.heartbeat : undefined,
      maxMessageSize: this.maxMessageSize,
      reconnected,
      hello,
    };
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.resolve(this._openInfo);
    this.emit('open', this._openInfo);
  }

  _rejectReady(err) {
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  // ------------------------------------------------------------ writing

  _write(bytes) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WS_OPEN) return false;
    try {
      ws.send(bytes);
      return true;
    } catch (err) {
      this.emit('error', err);
      return false;
    }
  }

  _allocId() {
    for (let i = 0; i < 65535; i++) {
      const id = this._nextId;
      this._nextId = id >= 65535 ? 1 : id + 1;
      if (!this._inflight.has(id)) return id;
    }
    return 0;
  }

  /** Write a send (first time, or again with DUP after a reconnect). */
  _writeEntry(e, dup) {
    if (sendSize(e.qos, e.payload.length) > this.maxMessageSize) {
      this._settle(e, false, localError('EMSGSIZE', 'message of '
        + sendSize(e.qos, e.payload.length) + ' bytes is over the gateway\'s max_message_size ('
        + this.maxMessageSize + ')', { temporary: false }));
      return;
    }
    if (e.qos === 0) {
      if (this._write(encodeSend(e.type, e.payload, 0))) this._settle(e, true, undefined);
      return;
    }
    if (!e.msgid) {
      const id = this._allocId();
      if (!id) {
        this._settle(e, false, localError('EBUSY', 'all 65535 message ids are in flight'));
        return;
      }
      e.msgid = id;
      this._inflight.set(id, e);
    }
    const id = e.msgid;
    if (e.qos === 2 && this._inherited && !(this._released[id >> 3] & (1 << (id & 7)))) {
      // The session existed before this object: an earlier client of the
      // device (a reloaded page...) may have left QoS 2 state under this id,
      // and the gateway would answer a new SEND with that old reply. A REL
      // before the first use clears it (REL is idempotent; COM answers).
      if (this._write(encodeId(REL, id))) this._released[id >> 3] |= 1 << (id & 7);
    }
    e.state = 'sent';
    this._write(encodeSend(e.type, e.payload, e.qos, e.msgid, dup));
  }

  /** On (re)connect: in call order, retransmit what was in flight (DUP),
   *  repeat pending RELs, then write what was queued. */
  _flush() {
    for (const e of Array.from(this._outbox.values())) {
      if (this.state !== 'open') return;
      if (e.state === 'queued') this._writeEntry(e, false);
      else if (e.state === 'sent') this._writeEntry(e, true);
      else if (e.state === 'rel') this._write(encodeId(REL, e.msgid));
    }
    for (const [id, e] of this._inflight) {
      if (e.cleanup) this._write(encodeId(REL, id));
    }
  }

  _settle(e, ok, value) {
    if (e.timer) clearTimeout(e.timer);
    e.timer = null;
    this._outbox.delete(e.seq);
    if (e.msgid && this._inflight.get(e.msgid) === e) this._inflight.delete(e.msgid);
    e.settle(ok, value);
  }

  _onSendTimeout(e, ms) {
    e.timer = null;
    if (!this._outbox.has(e.seq)) return;
    if (e.state === 'rel') {
      // REC arrived: the backend handled it exactly once; only COM is missing.
      const reply = decodePayload(e.reply, e.decodeHow);
      this._toCleanup(e);
      e.settle(true, reply);
      return;
    }
    const err = localError('ETIMEDOUT', 'no answer within ' + ms + ' ms', {
      msgid: e.msgid || undefined, written: e.state !== 'queued',
    });
    if (e.qos === 2 && e.state === 'sent') {
      // The gateway may hold QoS 2 state for this msgid: release it before reuse.
      this._toCleanup(e);
      if (this.state === 'open') this._write(encodeId(REL, e.msgid));
      e.settle(false, err);
      return;
    }
    this._settle(e, false, err);
  }

  _toCleanup(e) {
    this._outbox.delete(e.seq);
    this._inflight.set(e.msgid, { cleanup: true, msgid: e.msgid });
  }

  _failAll(err) {
    for (const e of Array.from(this._outbox.values())) this._settle(e, false, err);
    this._inflight.clear();
  }

  // ------------------------------------------------------------ reading

  /** Something came from the gateway: it is alive. An outstanding heartbeat
   *  probe is answered; the next one is due `interval` from now. */
  _alive() {
    this._lastRx = Date.now();
    if (this._probeAt && this.state === 'open') {
      this._probeAt = 0;
      this._setTimer('heartbeat', this._hb.interval, () => this._heartbeatCheck());
    }
  }

  _onFrame(data) {
    this._alive();
    const bytes = toUint8(data);
    if (!bytes) {
      this.emit('error', new RainbowError('unexpected frame type (set binaryType arraybuffer)',
        { code: 'EPROTO' }));
      return;
    }
    let p;
    try {
      p = decode(bytes);
    } catch (err) {
      this.emit('error', new RainbowError('bad packet from the gateway: ' + err.message,
        { code: 'EPROTO' }));
      return;
    }
    switch (p.cmd) {
      case HELLO: {
        let hello = {};
        try {
          hello = JSON.parse(utf8(p.payload));
        } catch (err) {
          this.emit('error', new RainbowError('unreadable HELLO', { code: 'EPROTO' }));
        }
        this._ready(hello && typeof hello === 'object' ? hello : {});
        break;
      }
      case SEND:
        this._onPush(p);
        break;
      case ACK: {
        const e = this._inflight.get(p.msgid);
        if (e && e.qos === 1 && e.state === 'sent') {
          this._settle(e, true, decodePayload(p.payload, e.decodeHow));
        }
        break;
      }
      case REC: {
        const e = this._inflight.get(p.msgid);
        if (e && e.qos === 2 && e.state === 'sent') {
          e.reply = p.payload;
          e.state = 'rel';
        }
        // for an unknown id too: the gateway finishes its exchange
        if (!e || e.qos === 2 || e.cleanup) this._write(encodeId(REL, p.msgid));
        break;
      }
      case COM: {
        const e = this._inflight.get(p.msgid);
        if (!e) break;
        if (e.state === 'rel') this._settle(e, true, decodePayload(e.reply, e.decodeHow));
        else if (e.cleanup || e.probe) this._inflight.delete(p.msgid);
        break;
      }
      case REL:
        // the gateway releases a QoS 2 push: forget it, answer COM (always)
        this._in2.delete(p.msgid);
        this._write(encodeId(COM, p.msgid));
        break;
      case NAK: {
        const err = nakError(p.msgid, p.payload);
        const e = p.msgid ? this._inflight.get(p.msgid) : undefined;
        if (e && e.settle && (e.state === 'sent' || e.state === 'rel')) {
          this._settle(e, false, err);
        } else {
          this.emit('error', err); // a failed QoS 0 send (msgid 0), or a malformed packet
        }
        break;
      }
      default:
        break;
    }
  }

  _sweep(now) {
    if (now < this._sweepAt) return;
    this._sweepAt = now + 60000;
    const w = this.options.dedupWindow;
    for (const [id, s] of this._in1) if (now - s.time > w) this._in1.delete(id);
    for (const [id, s] of this._in2) if (now - s.time > w) this._in2.delete(id);
  }

  _onPush(p) {
    const now = Date.now();
    this._sweep(now);
    if (p.qos === 0) {
      this._deliver(p, null);
      return;
    }
    const id = p.msgid;
    const sig = signature(p.msgtype, p.payload);
    const seen = p.qos === 1 ? this._in1 : this._in2;
    const answer = p.qos === 1 ? ACK : REC;
    const prev = seen.get(id);
    // QoS 2: a msgid is one message until REL. QoS 1: a copy marked DUP of
    // the message last seen under that msgid.
    const duplicate = prev && prev.sig === sig && (p.qos === 2 || p.dup)
      && now - prev.time <= this.options.dedupWindow;
    if (duplicate) {
      if (prev.reply) this._write(encodeId(answer, id, prev.reply));
      // else: the application's reply is still being computed; it goes out then
      return;
    }
    const s = { sig, time: now, reply: null };
    seen.set(id, s);
    this._deliver(p, (reply) => {
      s.reply = reply;
      if (seen.get(id) === s) this._write(encodeId(answer, id, reply));
    });
  }

  /** Give a push to the 'message' listeners; the first one that returns
   *  something (or a Promise of something) gives the ACK/REC payload. */
  _deliver(p, done) {
    const data = decodePayload(p.payload, this.json ? 'json' : 'text');
    const meta = {
      qos: p.qos, msgid: p.msgid, dup: p.dup, msgType: p.msgtype,
      payload: p.payload, raw: p.raw,
    };
    const results = this.emit('message', p.msgtype, data, meta);
    if (!done) return;
    const reply = results.find((r) => r !== undefined);
    const finish = (v) => {
      let bytes = EMPTY;
      try {
        bytes = toBytes(v);
      } catch (err) {
        this.emit('error', err);
      }
      done(bytes);
    };
    if (reply && typeof reply.then === 'function') {
      reply.then(finish, (err) => {
        this.emit('error', err);
        done(EMPTY);
      });
    } else {
      finish(reply);
    }
  }

  // ------------------------------------------------------------ heartbeat

  /** When nothing has come from the gateway for `interval` ms (default: the
   *  server's heartbeat from HELLO, else 25 s), probe it: a WebSocket ping
   *  where the socket has ping() (the ws package), otherwise a REL for an
   *  unused msgid, which the gateway answers with COM. No answer within
   *  `timeout` ms: the connection is dropped and reconnected. */
  _startHeartbeat(serverSeconds) {
    if (!this._heartbeat) return;
    const interval = isNumber(this._heartbeat.interval) && this._heartbeat.interval > 0
      ? this._heartbeat.interval
      : (isNumber(serverSeconds) && serverSeconds > 0 ? serverSeconds * 1000
        : HEARTBEAT_DEFAULT_INTERVAL);
    const timeout = isNumber(this._heartbeat.timeout) && this._heartbeat.timeout > 0
      ? this._heartbeat.timeout : HEARTBEAT_DEFAULT_TIMEOUT;
    this._hb = { interval, timeout };
    this._probeAt = 0;
    this._setTimer('heartbeat', interval, () => this._heartbeatCheck());
  }

  _heartbeatCheck() {
    const ws = this._ws;
    if (!ws || this.state !== 'open') return;
    const { interval, timeout } = this._hb;
    const now = Date.now();
    if (this._probeAt) {
      if (this._lastRx >= this._probeAt) {
        this._probeAt = 0;
      } else if (now - this._probeAt >= timeout) {
        this._abandon('heartbeat timeout: no answer within ' + timeout + ' ms');
        return;
      } else {
        this._setTimer('heartbeat', this._probeAt + timeout - now, () => this._heartbeatCheck());
        return;
      }
    }
    const idle = now - this._lastRx;
    if (idle < interval) {
      this._setTimer('heartbeat', interval - idle, () => this._heartbeatCheck());
      return;
    }
    this._probeAt = now;
    if (typeof ws.ping === 'function') {
      try { ws.ping(); } catch (e) { /* closing */ }
    } else {
      const id = this._allocId();
      if (id) {
        this._inflight.set(id, { probe: true, msgid: id });
        this._write(encodeId(REL, id));
      }
    }
    this._setTimer('heartbeat', timeout, () => this._heartbeatCheck());
  }

  // ------------------------------------------------------------ timers

  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = setTimeout(() => {
      this._timers[name] = null;
      fn();
    }, ms);
  }

  _clearTimer(name) {
    if (this._timers[name]) clearTimeout(this._timers[name]);
    this._timers[name] = null;
  }
}

export default Rainbow;
