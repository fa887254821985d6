/*! wslb client: a WebSocket look-alike that falls back to Server-Sent Events.
 *
 * Served by the balancer at GET /_lb/client.js. Load it with a script tag;
 * it defines `window.WslbSocket`, which takes the arguments of `WebSocket`
 * plus an options object:
 *
 *   const ws = new WslbSocket('ws://host/chat', [], { timeout: 5000 });
 *   ws.onmessage = (e) => console.log(ws.transport, e.data);
 *
 * It first opens a real WebSocket. When that is impossible (no WebSocket in
 * the page, an error or a close before the open, or no open within
 * `timeout` ms) it opens the balancer's fallback instead: an event stream
 * (GET with Accept: text/event-stream, through EventSource) for what the
 * backend sends, and one POST per message for what the page sends, to the
 * session URL named by the stream's `open` event. Either way the page sees
 * the WebSocket interface: readyState, send, close, bufferedAmount,
 * binaryType and the open/message/error/close events. Two more properties:
 * `transport` ('websocket' or 'sse': the one in use, or being tried while
 * CONNECTING) and `connectionId` (in sse mode, the session's id in the
 * balancer's /api/connections; null otherwise). Options: see DEFAULTS.
 *
 * Differences in fallback mode, by the nature of the transport:
 * - `protocol` is '' (the stream cannot negotiate a subprotocol);
 * - close(code, reason) closes the backend session with 1000 whatever the
 *   code (the DELETE carries none); the close event reports what the
 *   balancer reports;
 * - line breaks of text messages arrive as '\n' (the stream splits lines
 *   on \r\n, \r and \n alike);
 * - meant for the balancer's own origin (cross-origin needs CORS headers).
 *
 * Plain ES2017, no dependencies, no build step.
 */
(function (global) {
  'use strict';

  var CONNECTING = 0;
  var OPEN = 1;
  var CLOSING = 2;
  var CLOSED = 3;
  var EVENT_TYPES = ['open', 'message', 'error', 'close'];
  var DEFAULTS = {
    // ms to wait for the WebSocket to open before falling back.
    timeout: 5000,
    // ms a dropped stream may spend reconnecting (resuming) before the
    // session counts as lost.
    resumeTimeout: 30000,
    // ms to wait for the stream's close event after the session is gone
    // (DELETE answered, or a POST answered 404).
    closeGrace: 3000,
    // Set false to never fall back (plain WebSocket behaviour).
    fallback: true,
    // Set true to skip the WebSocket attempt (testing, known-bad proxies).
    forceFallback: false,
  };

  function domError(message, name) {
    return new DOMException(message, name);
  }

  // The ws:// or wss:// form of `url` (relative and http(s) URLs accepted,
  // as WebSocket does); throws a SyntaxError DOMException otherwise.
  function wsUrl(url) {
    var u;
    try {
      u = new URL(String(url), global.location ? global.location.href : undefined);
    } catch (e) {
      throw domError('Invalid URL: ' + url, 'SyntaxError');
    }
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
      throw domError('Unsupported URL scheme: ' + u.protocol, 'SyntaxError');
    }
    if (u.hash) throw domError('URL has a fragment: ' + url, 'SyntaxError');
    return u.href;
  }

  // The http(s) URL of the same path and query (where the stream opens).
  function httpUrl(ws) {
    return ws.replace(/^ws(s?):/, 'http$1:');
  }

  // Standard base64 to bytes.
  function decodeBase64(text) {
    var bin = global.atob(text);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function closeEvent(code, reason, wasClean) {
    var init = { code: code, reason: reason, wasClean: wasClean };
    if (typeof global.CloseEvent === 'function') return new global.CloseEvent('close', init);
    var e = new Event('close');
    Object.keys(init).forEach(function (k) { Object.defineProperty(e, k, { value: init[k] }); });
    return e;
  }

  // One outgoing message as a POST body: a private copy of its bytes (the
  // page may reuse its buffer right after send), its size and content type.
  function outgoing(data) {
    if (typeof data === 'string') {
      var text = new TextEncoder().encode(data);
      return { body: text, size: text.byteLength, type: 'text/plain;charset=utf-8' };
    }
    var bin = 'application/octet-stream';
    if (data instanceof ArrayBuffer) return { body: data.slice(0), size: data.byteLength, type: bin };
    if (ArrayBuffer.isView(data)) {
      var copy = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      return { body: copy, size: copy.byteLength, type: bin };
    }
    if (typeof Blob === 'function' && data instanceof Blob) {
      return { body: data.slice(), size: data.size, type: bin };
    }
    // WebSocket sends anything else as its string form.
    return outgoing(String(data));
  }

  class WslbSocket extends EventTarget {
    constructor(url, protocols, options) {
      super();
      if (typeof protocols === 'string') protocols = [protocols];
      this._url = wsUrl(url);
      this._protocols = protocols || [];
      this._opts = Object.assign({}, DEFAULTS, options || {});
      this._state = CONNECTING;
      this._binaryType = 'blob';
      this._protocol = '';
      this._transport = null;
      this._handlers = {};
      this._ws = null; // the WebSocket, in websocket mode (or while trying it)
      this._es = null; // the EventSource, in sse mode
      this._postUrl = null; // the session URL (sse mode)
      this._queue = []; // POSTs and the final DELETE, in order
      this._queued = 0; // bytes in `_queue`
      this._pumping = false;
      this._timers = {};
      this.connectionId = null; // the balancer's id of the session (sse mode)
      var self = this;
      // onopen & co. as listeners of their own, called with the socket as
      // `this` (as the browser's WebSocket does).
      EVENT_TYPES.forEach(function (type) {
        self.addEventListener(type, function (e) {
          var h = self._handlers[type];
          if (typeof h === 'function') h.call(self, e);
        });
      });
      var canWs = typeof global.WebSocket === 'function' && !this._opts.forceFallback;
      if (canWs) this._tryWebSocket();
      else if (this._opts.fallback) this._startSse();
      // Like a WebSocket that cannot connect: fail after the constructor.
      else setTimeout(function () { self._fail(); }, 0);
    }

    get url() { return this._url; }
    get readyState() { return this._state; }
    get protocol() { return this._protocol; }
    get extensions() { return this._ws && this._state !== CONNECTING ? this._ws.extensions : ''; }
    get transport() { return this._transport; }
    get bufferedAmount() {
      if (this._ws && this._transport === 'websocket') return this._ws.bufferedAmount;
      return this._queued;
    }
    get binaryType() { return this._binaryType; }
    set binaryType(t) {
      if (t !== 'blob' && t !== 'arraybuffer') return; // WebSocket ignores others
      this._binaryType = t;
      if (this._ws) this._ws.binaryType = t;
    }

    send(data) {
      if (this._state === CONNECTING) {
        throw domError('Still in CONNECTING state.', 'InvalidStateError');
      }
      if (this._state !== OPEN) return; // WebSocket drops these silently
      if (this._transport === 'websocket') {
        this._ws.send(data);
        return;
      }
      var msg = outgoing(data);
      msg.method = 'POST';
      this._enqueue(msg);
    }

    close(code, reason) {
      if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
        throw domError('Close code must be 1000 or in 3000-4999: ' + code, 'InvalidAccessError');
      }
      reason = reason === undefined ? '' : String(reason);
      if (new TextEncoder().encode(reason).byteLength > 123) {
        throw domError('Close reason longer than 123 bytes.', 'SyntaxError');
      }
      if (this._state === CLOSING || this._state === CLOSED) return;
      if (this._state === CONNECTING) {
        // As WebSocket does: the attempt fails (error, then close 1006).
        this._fail();
        return;
      }
      this._state = CLOSING;
      if (this._transport === 'websocket') {
        if (code === undefined) this._ws.close();
        else this._ws.close(code, reason);
        return;
      }
      // After the queued messages (WebSocket sends them before its close).
      this._enqueue({ method: 'DELETE', body: null, size: 0, type: null });
    }

    // ---- websocket mode ----

    _tryWebSocket() {
      var self = this;
      var ws;
      try {
        ws = new global.WebSocket(this._url, this._protocols);
      } catch (e) {
        // A bad protocol list is the caller's error, as with WebSocket.
        if (e && e.name === 'SyntaxError') throw e;
        this._fallBack();
        return;
      }
      this._ws = ws;
      this._transport = 'websocket';
      ws.binaryType = this._binaryType;
      var give = function () {
        if (self._ws !== ws || self._state !== CONNECTING) return;
        ws.onopen = ws.onerror = ws.onclose = ws.onmessage = null;
        try { ws.close(); } catch (e) { /* already closing */ }
        self._ws = null;
        self._fallBack();
      };
      this._timer('open', this._opts.timeout, give);
      ws.onerror = give;
      ws.onclose = give;
      ws.onopen = function () {
        self._clearTimer('open');
        if (self._state !== CONNECTING) return;
        self._protocol = ws.protocol;
        self._state = OPEN;
        ws.onerror = function () { self.dispatchEvent(new Event('error')); };
        ws.onclose = function (e) {
          self._state = CLOSED;
          self.dispatchEvent(closeEvent(e.code, e.reason, e.wasClean));
        };
        ws.onmessage = function (e) {
          self.dispatchEvent(new MessageEvent('message', { data: e.data, origin: e.origin }));
        };
        self.dispatchEvent(new Event('open'));
      };
    }

    _fallBack() {
      if (this._opts.fallback) this._startSse();
      else this._fail();
    }

    // ---- sse mode ----

    _startSse() {
      var self = this;
      this._transport = 'sse';
      var es;
      try {
        es = new global.EventSource(httpUrl(this._url));
      } catch (e) {
        setTimeout(function () { self._fail(); }, 0);
        return;
      }
      this._es = es;
      // Both the stream's `event: open` (a MessageEvent with data) and
      // EventSource's own open (connected, no data) arrive as 'open'.
      es.addEventListener('open', function (e) {
        if (self._es !== es) return;
        self._clearTimer('resume');
        if (typeof e.data === 'string') self._sseOpened(e.data);
      });
      es.addEventListener('message', function (e) {
        if (self._es !== es || self._state === CONNECTING) return;
        self._deliver(e.data);
      });
      es.addEventListener('binary', function (e) {
        if (self._es !== es || self._state === CONNECTING) return;
        var bytes;
        try {
          bytes = decodeBase64(e.data);
        } catch (err) {
          self._fail();
          return;
        }
        self._deliver(self._binaryType === 'blob' ? new Blob([bytes]) : bytes);
      });
      es.addEventListener('close', function (e) {
        if (self._es !== es) return;
        var info = {};
        try { info = JSON.parse(e.data) || {}; } catch (err) { /* no details */ }
        var code = typeof info.code === 'number' ? info.code : 1005;
        var reason = typeof info.reason === 'string' ? info.reason : '';
        self._finish(code, reason, true);
      });
      es.addEventListener('error', function () {
        if (self._es !== es) return;
        if (self._state === CONNECTING || es.readyState === global.EventSource.CLOSED) {
          // Never opened, or refused for good (the resume got a 404 or a
          // non-stream answer): the session is lost.
          self._fail();
          return;
        }
        // Dropped: EventSource reconnects by itself with Last-Event-ID and
        // the balancer resumes the stream; give up if that takes too long.
        if (!self._timers.resume) {
          self._timer('resume', self._opts.resumeTimeout, function () { self._fail(); });
        }
      });
    }

    _sseOpened(json) {
      if (this._state !== CONNECTING) return;
      var info;
      try { info = JSON.parse(json); } catch (e) { info = null; }
      if (!info || typeof info.url !== 'string') {
        this._fail();
        return;
      }
      this._postUrl = new URL(info.url, httpUrl(this._url)).href;
      this.connectionId = info.id === undefined ? null : info.id;
      this._state = OPEN;
      this.dispatchEvent(new Event('open'));
    }

    _deliver(data) {
      if (this._state === CLOSED) return;
      var origin = new URL(this._url).origin;
      this.dispatchEvent(new MessageEvent('message', { data: data, origin: origin }));
    }

    _enqueue(item) {
      this._queue.push(item);
      this._queued += item.size;
      this._pump();
    }

    // Sends the queue one request at a time, so the backend gets the
    // messages in the order of send().
    async _pump() {
      if (this._pumping) return;
      this._pumping = true;
      try {
        while (this._queue.length && this._state !== CLOSED) {
          var item = this._queue[0];
          var init = { method: item.method, cache: 'no-store', credentials: 'same-origin' };
          if (item.body !== null) {
            init.body = item.body;
            init.headers = { 'Content-Type': item.type };
          }
          var res;
          try {
            res = await fetch(this._postUrl, init);
          } catch (e) {
            this._fail();
            return;
          }
          // Closed meanwhile: the queue is already gone.
          if (this._state === CLOSED) return;
          this._queue.shift();
          this._queued -= item.size;
          if (res.status === 404) {
            // The session is gone: its close event may still be on the way.
            this._gone(1006, '', false);
            return;
          }
          if (!res.ok) {
            // Too big (413) or refused: the message is lost, and so is the
            // order of what follows; end the session.
            this._deleteNow();
            this._fail(res.status === 413 ? 1009 : 1006);
            return;
          }
          if (item.method === 'DELETE') {
            // The stream now carries `event: close` (1000).
            this._gone(1000, '', true);
            return;
          }
        }
      } finally {
        this._pumping = false;
      }
    }

    // Closes the backend session without waiting (after a refused POST).
    _deleteNow() {
      if (!this._postUrl) return;
      fetch(this._postUrl, { method: 'DELETE', credentials: 'same-origin' }).catch(function () {});
    }

    // Waits a little for the stream's own close event, then closes with
    // the given code.
    _gone(code, reason, wasClean) {
      var self = this;
      if (this._state === OPEN) this._state = CLOSING;
      this._timer('gone', this._opts.closeGrace, function () {
        if (code === 1006) self.dispatchEvent(new Event('error'));
        self._finish(code, reason, wasClean);
      });
    }

    // ---- both ----

    // Abnormal end: error event, then close with `code` (1006 unless said).
    _fail(code) {
      if (this._state === CLOSED) return;
      this._teardown();
      this.dispatchEvent(new Event('error'));
      this.dispatchEvent(closeEvent(code || 1006, '', false));
    }

    _finish(code, reason, wasClean) {
      if (this._state === CLOSED) return;
      this._teardown();
      this.dispatchEvent(closeEvent(code, reason, wasClean));
    }

    _teardown() {
      this._state = CLOSED;
      Object.keys(this._timers).forEach(this._clearTimer, this);
      if (this._es) this._es.close(); // no reconnect from here on
      if (this._ws) {
        this._ws.onopen = this._ws.onerror = this._ws.onclose = this._ws.onmessage = null;
        try { this._ws.close(); } catch (e) { /* already closed */ }
      }
      this._queue = [];
      this._queued = 0;
    }

    _timer(name, ms, fn) {
      this._clearTimer(name);
      var self = this;
      this._timers[name] = setTimeout(function () {
        delete self._timers[name];
        fn();
      }, ms);
    }

    _clearTimer(name) {
      if (this._timers[name]) clearTimeout(this._timers[name]);
      delete this._timers[name];
    }
  }

  // on<type> handler properties.
  EVENT_TYPES.forEach(function (type) {
    Object.defineProperty(WslbSocket.prototype, 'on' + type, {
      get: function () { return this._handlers[type] || null; },
      set: function (h) { this._handlers[type] = typeof h === 'function' ? h : null; },
      configurable: true,
      enumerable: true,
    });
  });

  // The state constants, on the class and on every instance.
  [['CONNECTING', CONNECTING], ['OPEN', OPEN], ['CLOSING', CLOSING], ['CLOSED', CLOSED]]
    .forEach(function (pair) {
      var desc = { value: pair[1], enumerable: true };
      Object.defineProperty(WslbSocket, pair[0], desc);
      Object.defineProperty(WslbSocket.prototype, pair[0], desc);
    });

  global.WslbSocket = WslbSocket;
})(typeof window !== 'undefined' ? window : self);
