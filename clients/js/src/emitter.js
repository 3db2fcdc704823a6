// A small event emitter (no dependency on Node's events module).
// A listener that throws does not stop the others nor the client: the error
// goes to the 'error' listeners (or, thrown from an 'error' listener, is
// rethrown asynchronously so it is not lost).

export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let list = this._listeners.get(event);
    if (!list) this._listeners.set(event, (list = []));
    list.push({ fn, once: false });
    return this;
  }

  once(event, fn) {
    this.on(event, fn);
    const list = this._listeners.get(event);
    list[list.length - 1].once = true;
    return this;
  }

  /** off(event, fn) removes fn; off(event) every listener of event; off() all. */
  off(event, fn) {
    if (event === undefined) {
      this._listeners.clear();
      return this;
    }
    const list = this._listeners.get(event);
    if (!list) return this;
    if (fn === undefined) {
      this._listeners.delete(event);
      return this;
    }
    const i = list.findIndex((l) => l.fn === fn);
    if (i >= 0) list.splice(i, 1);
    if (!list.length) this._listeners.delete(event);
    return this;
  }

  listenerCount(event) {
    const list = this._listeners.get(event);
    return list ? list.length : 0;
  }

  /** Calls every listener; returns their return values (in order). */
  emit(event, ...args) {
    const list = this._listeners.get(event);
    if (!list || !list.length) return [];
    const out = [];
    for (const l of list.slice()) {
      if (l.once) this.off(event, l.fn);
      try {
        out.push(l.fn.apply(this, args));
      } catch (err) {
        out.push(undefined);
        if (event === 'error' || !this.listenerCount('error')) {
          setTimeout(() => { throw err; }, 0);
        } else {
          this.emit('error', err);
        }
      }
    }
    return out;
  }
}
