// Types for @rainbow-gateway/client (ES module).

export declare const VERSION: string;
/** The WebSocket subprotocol offered when `v2` is on. */
export declare const SUBPROTOCOL: 'rainbow.v2';

/** Anything a payload can be given as: bytes as they are, a string as
 *  UTF-8, null/undefined as empty, anything else as JSON text. */
export type Payload = Uint8Array | ArrayBuffer | ArrayBufferView | string | null | undefined | object | number | boolean;

export interface ReconnectOptions {
  /** First delay, ms (default 500). */
  minDelay?: number;
  /** Largest delay, ms (default 20000). */
  maxDelay?: number;
  /** Growth per failed attempt (default 2). */
  factor?: number;
  /** Fraction of the delay drawn at random and taken off, 0..1 (default 0.5). */
  jitter?: number;
}

export interface HeartbeatOptions {
  /** Probe after this long (ms) without anything from the gateway
   *  (default: the gateway's heartbeat from HELLO, else 25000). */
  interval?: number;
  /** Drop the connection (and reconnect) when a probe is not answered
   *  within this many ms (default 10000). */
  timeout?: number;
}

/** A WebSocket constructor with the W3C shape (browser, Node.js 22+, ws). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[], options?: unknown): any;
}

export interface RainbowOptions {
  /** Device id: the `X-DEVICEID` query argument; with `v2` (or `session`)
   *  the device's session is resumed on reconnect. */
  device?: string;
  /** Platform: the `X-CLIENT-OS` query argument. */
  platform?: string;
  /** Connection token, sent as the `token` query argument of every
   *  connection attempt; a function is called before each attempt. */
  token?: string | (() => string | Promise<string>);
  /** Offer the rainbow.v2 subprotocol: HELLO, NAKs, sessions (default true). */
  v2?: boolean;
  /** Ask for a session with the original protocol (`session=1`). */
  session?: boolean;
  /** More query arguments for the connect URL (they reach the connect hook as headers). */
  query?: Record<string, string | number | boolean>;
  /** Decode payloads of pushes and replies as JSON (default false: text). */
  json?: boolean;
  /** Default timeout of send(), ms (default 10000; 0: none). */
  timeout?: number;
  /** Time allowed for the upgrade and HELLO, ms (default 10000). */
  connectTimeout?: number;
  /** Heartbeat probes; false turns them off; a number is the interval. */
  heartbeat?: HeartbeatOptions | number | false;
  /** Reconnect with jittered exponential backoff (default on); false: never. */
  reconnect?: ReconnectOptions | boolean;
  /** Largest packet the gateway accepts, replaced by HELLO's (default 65536). */
  maxMessageSize?: number;
  /** How long a QoS 1/2 push id is remembered to drop duplicates, ms (default 3600000). */
  dedupWindow?: number;
  /** Connect from the constructor (default: true when options are given,
   *  false for `new Rainbow(url)`, which waits for open()). */
  autoOpen?: boolean;
  /** The WebSocket implementation (default: globalThis.WebSocket, in
   *  Node.js without one the ws package). */
  WebSocket?: WebSocketConstructor;
  /** Third argument of the WebSocket constructor (ws: headers, agent, TLS options...). */
  wsOptions?: unknown;
}

export interface OpenInfo {
  /** The connection's identity (rainbow.v2), else null. */
  identity: string | null;
  /** Whether a session was resumed (rainbow.v2). */
  sessionPresent: boolean;
  /** 'rainbow.v2', or '' for the original protocol. */
  protocol: string;
  /** The gateway's ping interval in seconds (rainbow.v2). */
  heartbeat?: number;
  maxMessageSize: number;
  /** True from the second connection on. */
  reconnected: boolean;
  /** HELLO's JSON (rainbow.v2), else null. */
  hello: Record<string, unknown> | null;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  /** Whether a reconnect follows. */
  reconnecting: boolean;
  /** Set when close() was called. */
  byClient?: boolean;
}

export interface ReconnectInfo {
  attempt: number;
  /** ms until the attempt. */
  delay: number;
  code: number;
  reason: string;
}

export interface MessageMeta {
  qos: 0 | 1 | 2;
  /** undefined for QoS 0. */
  msgid?: number;
  dup: boolean;
  msgType: number;
  /** The payload's bytes. */
  payload: Uint8Array;
  /** The whole packet. */
  raw: Uint8Array;
}

/** What a 'message' listener may return: the ACK/REC payload (QoS 1/2),
 *  which the pusher receives as `data`; a Promise delays the answer. */
export type MessageReply = Payload | Promise<Payload> | void;

export interface SendOptions {
  /** 0, 1 or 2 (default 1). */
  qos?: 0 | 1 | 2;
  /** ms (default: the client's `timeout`); 0: none. */
  timeout?: number;
  /** Decode the reply as JSON (default: the client's `json`). */
  json?: boolean;
  /** Resolve with the reply's bytes. */
  binary?: boolean;
}

/** The result of send(): a Promise of the reply that is also an emitter of
 *  'success' (the reply) and 'fail' (the error), as the original SDK's. */
export interface SendPromise<T = any> extends Promise<T> {
  on(event: 'success', fn: (reply: T) => void): this;
  on(event: 'fail', fn: (err: RainbowError | Error) => void): this;
  once(event: 'success', fn: (reply: T) => void): this;
  once(event: 'fail', fn: (err: RainbowError | Error) => void): this;
  off(event: 'success' | 'fail', fn: (...args: any[]) => void): this;
}

export declare class RainbowError extends Error {
  /** 'NakError' (the gateway refused), 'TimeoutError', or 'RainbowError'. */
  name: string;
  /** A NAK's code (400, 422, 429, 502, 503, 504...), or a local one:
   *  'ETIMEDOUT', 'ECLOSED', 'EMSGSIZE', 'EBUSY', 'EPROTO', 'EWEBSOCKET', 'ENOWEBSOCKET'. */
  code: number | string;
  /** Whether the same request may succeed later. */
  temporary: boolean;
  /** The request's msgid (NAK, timeout). */
  msgid?: number;
  /** The NAK's whole JSON body. */
  nak?: { code: number; message: string; temporary: boolean; [key: string]: unknown };
  /** NAK 503 of an open circuit breaker: seconds to wait. */
  retryAfter?: number;
  /** Timeout: whether the request had been written to the gateway. */
  written?: boolean;
  /** ECLOSED after the gateway closed the connection: its close code. */
  closeCode?: number;
}

export type ConnectionState = 'closed' | 'connecting' | 'open' | 'reconnecting';

export declare class Rainbow {
  constructor(url: string | URL, options?: RainbowOptions);

  readonly url: string;
  readonly options: RainbowOptions;
  /** Current state. */
  readonly state: ConnectionState;
  readonly identity: string | null;
  readonly sessionPresent: boolean;
  readonly hello: Record<string, unknown> | null;
  /** 'rainbow.v2', '' (original protocol), or null before the first connection. */
  readonly protocol: string | null;
  readonly maxMessageSize: number;
  /** Sends not settled yet. */
  readonly pending: number;

  /** Connect (again); no-op while connecting or open. */
  open(): this;
  /** Close for good: no reconnect, unsettled sends rejected with 'ECLOSED'. */
  close(code?: number, reason?: string): this;
  /** Resolves when connected (at once if connected). */
  ready(): Promise<OpenInfo>;

  send<T = any>(msgType: number, data?: Payload, options?: SendOptions): SendPromise<T>;
  /** The original SDK's call shape. */
  send<T = any>(msgType: number, data: Payload, qos: 0 | 1 | 2, timeoutMs?: number): SendPromise<T>;

  on(event: 'open', fn: (info: OpenInfo) => void): this;
  on(event: 'message', fn: (msgType: number, data: any, meta: MessageMeta) => MessageReply): this;
  on(event: 'close', fn: (info: CloseInfo) => void): this;
  on(event: 'error', fn: (err: RainbowError | Error) => void): this;
  on(event: 'reconnect', fn: (info: ReconnectInfo) => void): this;
  once(event: 'open', fn: (info: OpenInfo) => void): this;
  once(event: 'message', fn: (msgType: number, data: any, meta: MessageMeta) => MessageReply): this;
  once(event: 'close', fn: (info: CloseInfo) => void): this;
  once(event: 'error', fn: (err: RainbowError | Error) => void): this;
  once(event: 'reconnect', fn: (info: ReconnectInfo) => void): this;
  off(event?: 'open' | 'message' | 'close' | 'error' | 'reconnect', fn?: (...args: any[]) => any): this;
  listenerCount(event: string): number;

  /** How the default WebSocket is found (overridable). */
  static loadWebSocket(): WebSocketConstructor | Promise<WebSocketConstructor> | undefined;
}

export default Rainbow;
