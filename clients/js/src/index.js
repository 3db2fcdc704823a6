// Browser (and any runtime with a global WebSocket) entry point: no dependency.
export { Rainbow, RainbowError, VERSION, SUBPROTOCOL } from './rainbow.js';
export { Rainbow as default } from './rainbow.js';
