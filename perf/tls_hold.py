#!/usr/bin/env python3
"""Opens N idle wss:// sessions (TLS, WebSocket upgrade, then nothing) and
holds them until SIGTERM/SIGINT. Prints `holding N` on stderr once all are
up (or `holding K (N requested, F failed)`). Used by perf/tls_memory.sh:
the proxy's memory per idle wss session is what is measured, not this.

    tls_hold.py HOST PORT N [CA_FILE]     (no CA_FILE: no verification)
"""
import asyncio
import base64
import os
import signal
import ssl
import sys


async def open_one(host, port, ctx, gate):
    async with gate:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname="localhost")
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.split(b"\r\n")[0].decode(errors="replace"))
        return reader, writer


async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = ssl.create_default_context()
    if len(sys.argv) > 4:
        ctx.load_verify_locations(sys.argv[4])
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    gate = asyncio.Semaphore(64)
    results = await asyncio.gather(
        *(open_one(host, port, ctx, gate) for _ in range(n)), return_exceptions=True)
    up = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"holding {len(up)} ({n} requested, {len(failed)} failed: {failed[0]!r})",
              file=sys.stderr, flush=True)
    else:
        print(f"holding {len(up)}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for _, writer in up:
        writer.transport.abort()


asyncio.run(main())
