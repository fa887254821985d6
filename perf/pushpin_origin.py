#!/usr/bin/env python3
"""perf/pushpin_origin.py: the GRIP origin Pushpin proxies to in perf/run.sh's
fan-out scenario (Python 3 standard library only).

Pushpin's route `* localhost:PORT,over_http` turns each client WebSocket into
WebSocket-over-HTTP requests (https://pushpin.org/docs/protocols/websocket-over-http/):
a POST with `Content-Type: application/websocket-events` whose body is a list
of events, each `TYPE[ <hex length>]\\r\\n[<content>\\r\\n]`. This origin
accepts every connection (`OPEN`) and, with the GRIP extension on
(`Sec-WebSocket-Extensions: grip`), subscribes it to its channels with a
control message `TEXT <hex>\\r\\nc:{"type":"subscribe","channel":"..."}\\r\\n`.
The channels are the request's `subscribe=a,b` query parameter (what
`wslb bench ws --subscribe` sends, and what the echo backend reads for wslb),
else `--channel`. Messages from clients are ignored; CLOSE is answered with
CLOSE; PING with PONG.

  pushpin_origin.py --port 18930 [--channel bench] [--listen 127.0.0.1]
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

EVENTS = "application/websocket-events"


def parse_events(body):
    """[(type, content bytes or None)] from a WebSocket-over-HTTP body."""
    out, at = [], 0
    while at < len(body):
        eol = body.find(b"\r\n", at)
        if eol < 0:
            raise ValueError("event line without CRLF")
        line = body[at:eol].decode("ascii")
        at = eol + 2
        name, _, size = line.partition(" ")
        if not size:
            out.append((name, None))
            continue
        n = int(size, 16)
        content = body[at:at + n]
        if len(content) != n or body[at + n:at + n + 2] != b"\r\n":
            raise ValueError("event content cut short")
        out.append((name, content))
        at += n + 2
    return out


def encode_event(name, content=None):
    if content is None:
        return name.encode("ascii") + b"\r\n"
    return b"%s %x\r\n%s\r\n" % (name.encode("ascii"), len(content), content)


def subscribe_event(channel):
    msg = json.dumps({"type": "subscribe", "channel": channel}, separators=(",", ":"))
    return encode_event("TEXT", b"c:" + msg.encode("utf-8"))


def channels_for(path, default):
    query = parse_qs(urlsplit(path).query)
    names = [n.strip() for v in query.get("subscribe", []) for n in v.split(",")]
    names = [n for n in names if n]
    return names or [default]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # thousands of OPENs arrive at once


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    channel = "bench"

    def log_message(self, fmt, *args):  # quiet: thousands of OPENs
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, b"pushpin origin for wslb perf\n", [("Content-Type", "text/plain")])

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != EVENTS:
            self.reply(400, b"expected application/websocket-events\n")
            return
        try:
            events = parse_events(body)
        except ValueError as e:
            self.reply(400, str(e).encode() + b"\n")
            return
        out = []
        for name, content in events:
            if name == "OPEN":
                out.append(encode_event("OPEN"))
                out += [subscribe_event(c) for c in channels_for(self.path, self.channel)]
            elif name == "CLOSE":
                out.append(encode_event("CLOSE", content))
            elif name == "PING":
                out.append(encode_event("PONG", content))
        self.reply(200, b"".join(out), [("Content-Type", EVENTS), ("Sec-WebSocket-Extensions", "grip")])


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--channel", default="bench")
    a = ap.parse_args(argv[1:])
    Handler.channel = a.channel
    server = Server((a.listen, a.port), Handler)
    print(f"pushpin origin on {a.listen}:{a.port}, default channel {a.channel}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
