#!/usr/bin/env python3
"""perf/wss_hold.py: hold N idle WebSocket sessions over TLS (wss://) for
perf/run.sh's scenario 7 (memory per idle wss session).

Opens the sessions (at most --parallel handshakes at a time), trusting only
the CA file given, TLS 1.3; prints "holding N" (or "holding N (M requested,
K failed)") on stdout once every open has settled, then keeps them open,
answering pings, until SIGINT or SIGTERM.

Usage: wss_hold.py --url wss://localhost:PORT/ --ca CERT.pem -n 2000
"""
import argparse
import asyncio
import base64
import os
import signal
import ssl
import sys
from urllib.parse import urlsplit


async def open_session(host, port, path, ctx, sem):
    """One wss session up to its 101; returns (reader, writer) or None."""
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout=10
            )
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            if not head.startswith(b"HTTP/1.1 101"):
                writer.close()
                return None
            return reader, writer
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            return None


async def idle(reader, writer):
    """Read frames until the peer closes; answer a ping with a masked pong."""
    try:
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(n)
            if b0 & 0x0F == 0x9 and n <= 125:
                mask = os.urandom(4)
                masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
                writer.write(bytes([0x8A, 0x80 | n]) + mask + masked)
                await writer.drain()
            elif b0 & 0x0F == 0x8:
                return
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
        return


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=100)
    a = ap.parse_args()
    u = urlsplit(a.url)
    if u.scheme != "wss" or not u.hostname:
        sys.exit("wss_hold.py: --url must be wss://HOST:PORT/...")
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    sem = asyncio.Semaphore(a.parallel)
    sessions = await asyncio.gather(
        *(open_session(u.hostname, u.port or 443, path, ctx, sem) for _ in range(a.n))
    )
    up = [s for s in sessions if s]
    failed = a.n - len(up)
    print(f"holding {len(up)}" + (f" ({a.n} requested, {failed} failed)" if failed else ""), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(idle(r, w)) for r, w in up]
    await stop.wait()
    for t in tasks:
        t.cancel()
    for _, w in up:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
