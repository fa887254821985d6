// The page side of tests/sse_browser.rs, evaluated in a page that loaded
// /_lb/client.js. Messages are {t: 'text', v: string} or {t: 'bin', v:
// [bytes], as: 'view' | 'buffer' | 'blob'} (the form given to send); echoes
// come back as {t, v, kind} with kind the binaryType they arrived as.
// Every wait is bounded.
//
// __exchange(url, messages, opts): one whole exchange, its outcome in
// `window.__result` (`window.__done` set at the end): opens a WslbSocket
// with `opts.socket` as options and `opts.binaryType`, sends every message
// at once, waits for as many echoes and an empty send buffer, then closes
// (with `opts.closeCode` when given) and waits for the close event.
//
// __session: the same in steps (open, send, echoes, close), for a test
// that does something between them.
(function () {
  const wait = (what, ms, pred) =>
    new Promise((resolve, reject) => {
      const start = Date.now();
      (function poll() {
        if (pred()) resolve();
        else if (Date.now() - start > ms) reject(new Error('timed out waiting for ' + what));
        else setTimeout(poll, 20);
      })();
    });

  // A binary message in the form asked for; a view is a window into a
  // larger buffer, so that sending more than its bytes shows.
  const binary = (m) => {
    const bytes = new Uint8Array(m.v);
    if (m.as === 'buffer') return bytes.buffer;
    if (m.as === 'blob') return new Blob([bytes]);
    const big = new Uint8Array(bytes.length + 8).fill(0xee);
    big.set(bytes, 4);
    return big.subarray(4, 4 + bytes.length);
  };

  const normalize = async (got) => {
    const out = [];
    for (const d of got) {
      if (typeof d === 'string') out.push({ t: 'text', v: d });
      else if (d instanceof ArrayBuffer) out.push({ t: 'bin', v: Array.from(new Uint8Array(d)), kind: 'arraybuffer' });
      else if (d instanceof Blob) out.push({ t: 'bin', v: Array.from(new Uint8Array(await d.arrayBuffer())), kind: 'blob' });
      else out.push({ t: 'other', v: String(d) });
    }
    return out;
  };

  // A WslbSocket with its events recorded in `rec`.
  const open = (url, opts, rec) => {
    const ws = new WslbSocket(url, [], opts.socket || {});
    const note = (what) => rec.log.push(Math.round(performance.now()) + ' ' + what);
    rec.got = [];
    rec.opened = false;
    rec.closed = null;
    rec.errors = 0;
    rec.listenerOpens = 0;
    if (opts.binaryType) ws.binaryType = opts.binaryType;
    ws.addEventListener('open', () => rec.listenerOpens++);
    ws.onopen = () => { rec.opened = true; note('open'); };
    ws.onmessage = (e) => rec.got.push(e.data);
    ws.onerror = () => { rec.errors++; note('error'); };
    ws.onclose = (e) => {
      rec.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      note('close ' + JSON.stringify(rec.closed));
    };
    return ws;
  };

  window.__exchange = function (url, messages, opts) {
    const result = { log: [] };
    const rec = { log: result.log };
    window.__result = result;
    window.__done = false;
    (async () => {
      const ws = open(url, opts, rec);
      result.constants = [
        WslbSocket.CONNECTING, WslbSocket.OPEN, WslbSocket.CLOSING, WslbSocket.CLOSED,
        ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED,
      ];
      result.initialState = ws.readyState;
      result.url = ws.url;
      result.binaryType = ws.binaryType;
      await wait('open', 10000, () => rec.opened || rec.closed);
      result.transport = ws.transport;
      result.openState = ws.readyState;
      result.connectionId = ws.connectionId;
      if (!rec.opened) throw new Error('closed before open: ' + JSON.stringify(rec.closed));
      result.listenerOpens = rec.listenerOpens;
      for (const m of messages) ws.send(m.t === 'text' ? m.v : binary(m));
      result.bufferedAfterSend = ws.bufferedAmount;
      await wait('the echoes', 10000, () => (rec.got.length >= messages.length && ws.bufferedAmount === 0) || rec.closed);
      result.echoes = await normalize(rec.got);
      if (opts.closeCode) ws.close(opts.closeCode, 'done');
      else ws.close();
      result.closingState = ws.readyState;
      await wait('the close', 10000, () => rec.closed);
      result.close = rec.closed;
      result.finalState = ws.readyState;
      result.errors = rec.errors;
      // Sending after the close is dropped without an exception.
      ws.send('after close');
    })()
      .catch((e) => { result.failure = String((e && e.stack) || e); })
      .finally(() => { window.__done = true; });
    return true;
  };

  const rec = { log: [] };
  let ws = null;
  window.__session = {
    // Resolves to {transport, readyState} once open.
    open: async (url, opts) => {
      ws = open(url, opts, rec);
      await wait('open', 10000, () => rec.opened || rec.closed);
      return { transport: ws.transport, readyState: ws.readyState, connectionId: ws.connectionId, closed: rec.closed };
    },
    send: (messages) => {
      for (const m of messages) ws.send(m.t === 'text' ? m.v : binary(m));
      return ws.bufferedAmount;
    },
    // Resolves to every echo so far once there are `n` and nothing waits
    // to be sent.
    echoes: async (n) => {
      await wait(n + ' echoes', 15000, () => (rec.got.length >= n && ws.bufferedAmount === 0) || rec.closed);
      return normalize(rec.got);
    },
    state: () => ({ readyState: ws.readyState, errors: rec.errors, closed: rec.closed, log: rec.log }),
    // Resolves to the close event's details once the session closed.
    closed: async () => {
      await wait('the close', 10000, () => rec.closed);
      return { close: rec.closed, errors: rec.errors, readyState: ws.readyState };
    },
    close: async () => {
      ws.close();
      await wait('the close', 10000, () => rec.closed);
      return { close: rec.closed, errors: rec.errors, readyState: ws.readyState };
    },
  };
})();
