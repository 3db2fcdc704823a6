// Test helpers: a real rainbow-server process with a generated ini, a real
// HTTP backend (node:http in this process), signed REST calls (v1 signature,
// docs/protocol.md "Signatures"), bounded waits, and a fake WebSocket for
// unit tests of the client's state machine.
//
// RAINBOW_BIN: the gateway binary (default ../../build/rainbow-server
// relative to clients/js). RAINBOW_LOG_LEVEL: the gateways' log_level.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, openSync, closeSync, readFileSync, accessSync, constants } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TOKEN = 'testtoken';

export function rainbowBin() {
  return process.env.RAINBOW_BIN || path.resolve(HERE, '..', '..', '..', 'build', 'rainbow-server');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export { sleep };

/** Poll pred (sync or async) until truthy; fail after timeout ms naming `what`. */
export async function waitUntil(pred, timeout = 15000, what = 'condition', interval = 20) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() >= deadline) {
      const detail = typeof what === 'function' ? what() : what;
      throw new Error('timed out after ' + timeout + ' ms waiting for ' + detail);
    }
    await sleep(interval);
  }
}

/** Resolve when emitter fires event (with its first argument), or fail. */
export function nextEvent(emitter, event, timeout = 15000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error('no ' + event + ' event within ' + timeout + ' ms'));
    }, timeout);
    const on = (arg) => {
      clearTimeout(t);
      emitter.off(event, on);
      resolve(arg);
    };
    emitter.on(event, on);
  });
}

/** Reject a promise that does not settle within ms. */
export function within(promise, ms, what = 'promise') {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(what + ' not settled within ' + ms + ' ms')), ms);
    }),
  ]);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function tmpDir(prefix = 'rainbow-js-') {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

// ------------------------------------------------------------ signatures

export function signV1(token, timestamp, nonce) {
  const parts = [String(token), String(timestamp), String(nonce)].sort((a, b) =>
    Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return createHash('sha1').update(parts.join('')).digest('hex');
}

export function signedQuery(token = TOKEN) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(1 + Math.floor(Math.random() * 1e12));
  return { timestamp, nonce, signature: signV1(token, timestamp, nonce) };
}

// ------------------------------------------------------------ HTTP

export function httpRequest(port, method, target, body, headers = {}, timeout = 30000) {
  return new Promise((resolve, reject) => {
    const data = body === undefined || body === null ? null
      : Buffer.isBuffer(body) ? body
        : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1', port, method, path: target, agent: false,
      headers: Object.assign(data ? { 'Content-Length': data.length } : {}, headers),
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error('HTTP ' + method + ' ' + target + ' timed out')));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// ------------------------------------------------------------ backend

/**
 * A real HTTP backend for the gateway's calls. Every request is recorded as
 * {method, path, query, headers (lower-case names), body (Buffer), time}.
 * `handler(req)` may answer ({status, headers, body} or a Promise of it);
 * returning undefined gives the default: connect hook admits, close hook
 * answers ok, a forward echoes its body.
 */
export class Backend {
  constructor() {
    this.requests = [];
    this.handler = null;
    this.server = http.createServer((req, res) => this._serve(req, res));
    this.server.keepAliveTimeout = 60000;
    this.sockets = new Set();
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }

  url(p) {
    return 'http://127.0.0.1:' + this.port + p;
  }

  _serve(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const u = new URL(req.url, 'http://x');
      const rec = {
        method: req.method, path: u.pathname, query: Object.fromEntries(u.searchParams),
        headers: req.headers, body: Buffer.concat(chunks), time: Date.now(),
      };
      this.requests.push(rec);
      let ans;
      try {
        ans = this.handler ? await this.handler(rec) : undefined;
      } catch (err) {
        ans = { status: 500, body: String(err) };
      }
      if (ans === undefined) ans = Backend.defaultAnswer(rec);
      if (ans === null) return; // never answer (the request hangs until the socket closes)
      const body = ans.body === undefined ? Buffer.alloc(0)
        : Buffer.isBuffer(ans.body) ? ans.body : Buffer.from(String(ans.body));
      try {
        res.writeHead(ans.status || 200, Object.assign({ 'Content-Length': body.length }, ans.headers || {}));
        res.end(body);
      } catch (err) { /* the gateway went away */ }
    });
  }

  static defaultAnswer(rec) {
    if (rec.path.startsWith('/connect')) return { status: 200, body: '{"status":"success"}', headers: { 'Content-Type': 'application/json' } };
    if (rec.path.startsWith('/close')) return { status: 200, body: 'ok' };
    return { status: 200, body: rec.body };
  }

  /** Forwards received (path /forward/<type>/), optionally of one type. */
  forwards(type) {
    return this.requests.filter((r) => r.path.startsWith('/forward/')
      && (type === undefined || r.path === '/forward/' + type + '/'));
  }

  connects() {
    return this.requests.filter((r) => r.path.startsWith('/connect'));
  }

  async stop() {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

// ------------------------------------------------------------ gateway

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => {
  try { accessSync(p, constants.X_OK); return true; } catch (e) { return false; }
});
const LIVE = new Set();
process.on('exit', () => {
  for (const child of LIVE) {
    try { child.kill('SIGKILL'); } catch (e) { /* gone */ }
  }
});

export class Gateway {
  /** opts: ini options overriding the defaults below (null leaves one out). */
  constructor(dir, backend, opts = {}) {
    this.dir = dir;
    this.backend = backend;
    this.opts = Object.assign({
      port: null,
      bind: '127.0.0.1',
      data_dir: path.join(dir, 'data'),
      log_level: process.env.RAINBOW_LOG_LEVEL || 'info',
      log_file: '',
      security_token: TOKEN,
      connect_url: backend ? backend.url('/connect') : '',
      forward_url: backend ? backend.url('/forward/') : '',
      close_url: backend ? backend.url('/close') : '',
      backend_timeout: 5,
      heartbeat: 0,
      retry_interval: 1,
      shutdown_grace: 2,
    }, opts);
    this.proc = null;
    this.logPath = path.join(dir, 'gateway.log');
  }

  async start() {
    if (!this.opts.port) this.opts.port = await freePort();
    this.port = this.opts.port;
    const lines = ['; generated by clients/js/test', '[main]'];
    for (const [k, v] of Object.entries(this.opts)) {
      if (v === null || v === undefined) continue;
      lines.push(k + ' = ' + (v === true ? 'true' : v === false ? 'false' : v));
    }
    this.conf = path.join(this.dir, 'rainbow.ini');
    writeFileSync(this.conf, lines.join('\n') + '\n');
    const bin = rainbowBin();
    try {
      accessSync(bin, constants.X_OK);
    } catch (e) {
      throw new Error('gateway binary ' + bin + ' is missing (set RAINBOW_BIN or run make)');
    }
    const log = openSync(this.logPath, 'a');
    // setpriv (util-linux) execs the gateway with a parent-death signal, so
    // it dies with this test process even when that is SIGKILLed
    const argv = SETPRIV ? ['--pdeathsig', 'KILL', '--', bin, '-f', this.conf] : ['-f', this.conf];
    const child = spawn(SETPRIV || bin, argv, { cwd: this.dir, stdio: ['ignore', log, log] });
    closeSync(log);
    this.proc = child;
    LIVE.add(child);
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      LIVE.delete(child);
      resolve({ code, signal });
    }));
    await this.waitReady();
    return this;
  }

  async waitReady(timeout = 20000) {
    const deadline = Date.now() + timeout;
    let exited = null;
    this.exited.then((x) => { exited = x; });
    for (;;) {
      if (exited) throw new Error('gateway exited during start (' + JSON.stringify(exited) + '):\n' + this.logTail());
      try {
        const r = await httpRequest(this.port, 'GET', '/hello/', null, {}, 2000);
        if (r.status === 200 && r.body.toString().trim() === 'ok') return;
      } catch (e) { /* not yet */ }
      if (Date.now() > deadline) throw new Error('gateway not ready within ' + timeout + ' ms:\n' + this.logTail());
      await sleep(30);
    }
  }

  get running() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Signal and wait for the exit (SIGKILL after `timeout`); {code, signal}. */
  async stop(signal = 'SIGTERM', timeout = 15000) {
    if (!this.proc) return null;
    if (this.running) {
      this.proc.kill(signal);
      if (signal !== 'SIGKILL') this.proc.kill('SIGCONT'); // in case a test froze it
    }
    let t;
    const killed = new Promise((resolve) => {
      t = setTimeout(() => { if (this.running) this.proc.kill('SIGKILL'); resolve(); }, timeout);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(t);
    return this.exited;
  }

  async restart() {
    if (this.running) throw new Error('restart: the gateway is still running');
    return this.start();
  }

  wsUrl(p = '/connect/') {
    return 'ws://127.0.0.1:' + this.port + p;
  }

  logTail(n = 40) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-n).join('\n');
    } catch (e) {
      return '';
    }
  }

  /** A signed (v1) REST call; resolves {status, json, body}. */
  async rest(method, p, query = {}, body) {
    const q = new URLSearchParams(Object.assign({}, query, signedQuery(this.opts.security_token)));
    const r = await httpRequest(this.port, method, p + '?' + q.toString(), body);
    let json;
    try { json = JSON.parse(r.body.toString()); } catch (e) { json = undefined; }
    return { status: r.status, json, body: r.body };
  }

  /** POST /send/ (query: identity|device|channel, msgtype, qos, timeout). */
  push(query, body) {
    return this.rest('POST', '/send/', query, body);
  }
}

/** A backend and a gateway in a temp dir; `cleanup()` stops both and removes the dir. */
export async function setup(opts = {}) {
  const dir = tmpDir();
  const backend = await new Backend().start();
  const gw = new Gateway(dir, backend, opts);
  await gw.start();
  const clients = [];
  return {
    dir, backend, gw, clients,
    track(c) { clients.push(c); return c; },
    async cleanup() {
      for (const c of clients) {
        try { c.close(); } catch (e) { /* already */ }
      }
      await gw.stop();
      await backend.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ------------------------------------------------------------ fake socket

/** A WebSocket stand-in driven by the test (W3C shape). */
export class FakeWebSocket {
  static instances = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.protocol = '';
    this.binaryType = 'blob';
    this.sent = [];
    this.closed = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }

  static get last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  static reset() {
    FakeWebSocket.instances = [];
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('fake: send while not open');
    this.sent.push(Uint8Array.from(data));
  }

  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return;
    this.closed = { code, reason };
    this.readyState = 3;
    setTimeout(() => this.onclose && this.onclose({ code, reason, wasClean: true }), 0);
  }

  // ---- the server side
  serverOpen(protocol = 'rainbow.v2') {
    this.readyState = 1;
    this.protocol = protocol;
    this.onopen && this.onopen({});
  }

  serverHello(hello = {}) {
    const h = Object.assign({ identity: 'f'.repeat(64), session_present: false, heartbeat: 0, max_message_size: 65536 }, hello);
    this.serverSend(Uint8Array.from([0x70, ...Buffer.from(JSON.stringify(h))]));
  }

  serverSend(bytes) {
    const u = Uint8Array.from(bytes);
    this.onmessage && this.onmessage({ data: u.buffer });
  }

  serverClose(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason, wasClean: code !== 1006 });
  }

  /** Sent packets as hex strings. */
  get sentHex() {
    return this.sent.map((b) => Buffer.from(b).toString('hex'));
  }
}

export function hex(s) {
  return Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

// ------------------------------------------------------------ tapped ws

/** A WebSocket class (the ws package) that records every socket it makes
 *  and every frame received, for tests that look under the client. */
export async function tappedWebSocket({ noPing = false } = {}) {
  const { WebSocket: WS } = await import('ws');
  // noPing: hide ping() as a browser's WebSocket does (the client then
  // probes with REL)
  const WebSocket = noPing ? class extends WS { get ping() { return undefined; } } : WS;
  const tap = { sockets: [], frames: [], out: [], dropOut: null };
  tap.WebSocket = class TappedWebSocket extends WebSocket {
    send(data, ...rest) {
      const b = Buffer.from(data);
      if (tap.dropOut && tap.dropOut(b)) return undefined; // lost on the way
      tap.out.push(b);
      return super.send(data, ...rest);
    }

    constructor(...args) {
      super(...args);
      tap.sockets.push(this);
      this.addEventListener('message', (ev) => {
        const b = Buffer.from(ev.data instanceof ArrayBuffer ? new Uint8Array(ev.data) : ev.data);
        tap.frames.push(b);
      });
    }
  };
  tap.last = () => tap.sockets[tap.sockets.length - 1];
  /** Frames that are SENDs (pushes) with this msgid. */
  tap.sends = (msgid) => tap.frames.filter((b) => (b[0] >> 4) === 1 && ((b[0] >> 1) & 3) > 0
    && b.readUInt16BE(3) === msgid);
  return tap;
}
