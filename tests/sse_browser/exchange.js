// The page side of tests/sse_browser.rs: one WslbSocket exchange whose
// outcome is collected in `window.__result` (`window.__done` set at the
// end), for the test to read back over the DevTools protocol.
//
// __exchange(url, messages, opts): opens a WslbSocket on `url` with
// `opts.socket` as its options and `opts.binaryType`, sends every message
// at once ({t: 'text', v: string} or {t: 'bin', v: [bytes], as: 'view' |
// 'buffer' | 'blob'}), waits for as many echoes and an empty send buffer,
// then closes (with `opts.closeCode` when given) and waits for the close
// event. Every wait is bounded.
window.__exchange = function (url, messages, opts) {
  const result = { log: [] };
  window.__result = result;
  window.__done = false;
  const note = (what) => result.log.push(Math.round(performance.now()) + ' ' + what);
  const wait = (what, ms, pred) =>
    new Promise((resolve, reject) => {
      const start = Date.now();
      (function poll() {
        if (pred()) resolve();
        else if (Date.now() - start > ms) reject(new Error('timed out waiting for ' + what));
        else setTimeout(poll, 20);
      })();
    });
  // A binary message in the form the test asks for; a view is a window
  // into a larger buffer, so that sending more than its bytes shows.
  const binary = (m) => {
    const bytes = new Uint8Array(m.v);
    if (m.as === 'buffer') return bytes.buffer;
    if (m.as === 'blob') return new Blob([bytes]);
    const big = new Uint8Array(bytes.length + 8).fill(0xee);
    big.set(bytes, 4);
    return big.subarray(4, 4 + bytes.length);
  };
  (async () => {
    const ws = new WslbSocket(url, [], opts.socket || {});
    result.constants = [
      WslbSocket.CONNECTING, WslbSocket.OPEN, WslbSocket.CLOSING, WslbSocket.CLOSED,
      ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED,
    ];
    result.initialState = ws.readyState;
    result.url = ws.url;
    if (opts.binaryType) ws.binaryType = opts.binaryType;
    result.binaryType = ws.binaryType;
    const got = [];
    let opened = false;
    let closed = null;
    let errors = 0;
    let listenerOpens = 0;
    ws.addEventListener('open', () => listenerOpens++);
    ws.onopen = () => { opened = true; note('open'); };
    ws.onmessage = (e) => got.push(e.data);
    ws.onerror = () => { errors++; note('error'); };
    ws.onclose = (e) => {
      closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      note('close ' + JSON.stringify(closed));
    };
    await wait('open', 10000, () => opened || closed);
    result.transport = ws.transport;
    result.openState = ws.readyState;
    result.connectionId = ws.connectionId;
    if (!opened) throw new Error('closed before open: ' + JSON.stringify(closed));
    result.listenerOpens = listenerOpens;
    for (const m of messages) ws.send(m.t === 'text' ? m.v : binary(m));
    result.bufferedAfterSend = ws.bufferedAmount;
    note('sent ' + messages.length);
    await wait('the echoes', 10000, () => (got.length >= messages.length && ws.bufferedAmount === 0) || closed);
    note('echoed ' + got.length);
    result.echoes = [];
    for (const d of got) {
      if (typeof d === 'string') result.echoes.push({ t: 'text', v: d });
      else if (d instanceof ArrayBuffer) result.echoes.push({ t: 'bin', v: Array.from(new Uint8Array(d)), kind: 'arraybuffer' });
      else if (d instanceof Blob) result.echoes.push({ t: 'bin', v: Array.from(new Uint8Array(await d.arrayBuffer())), kind: 'blob' });
      else result.echoes.push({ t: 'other', v: String(d) });
    }
    if (opts.closeCode) ws.close(opts.closeCode, 'done');
    else ws.close();
    result.closingState = ws.readyState;
    await wait('the close', 10000, () => closed);
    result.close = closed;
    result.finalState = ws.readyState;
    result.errors = errors;
    // Sending after the close is dropped without an exception.
    ws.send('after close');
  })()
    .catch((e) => { result.failure = String((e && e.stack) || e); })
    .finally(() => { window.__done = true; });
  return true;
};
