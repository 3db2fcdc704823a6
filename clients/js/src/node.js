// Node.js entry point: uses globalThis.WebSocket when the runtime has one
// (Node.js 22+), otherwise the `ws` package (Node.js 18 and 20).
import { Rainbow } from './rainbow.js';

let wsModule = null;

Rainbow.loadWebSocket = function loadWebSocket() {
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  if (!wsModule) {
    wsModule = import('ws').then((m) => m.WebSocket || m.default, (err) => {
      wsModule = null;
      throw new Error('Rainbow: this Node.js has no global WebSocket and the ws package '
        + 'cannot be loaded (' + err.message + '): npm install ws');
    });
  }
  return wsModule;
};

export { Rainbow, RainbowError, VERSION, SUBPROTOCOL } from './rainbow.js';
export { Rainbow as default } from './rainbow.js';
