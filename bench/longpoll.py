#!/usr/bin/env python3
"""Idle long polls for bench/longpoll.sh: COUNT connections to statushook, each asking
`GET /v1/events?after=<far ahead>&wait=30` again as soon as it is answered, so that each
always waits and none is ever woken by a callback. Runs until SIGTERM, then prints how the
polls were answered.

    bench/longpoll.py HOST PORT COUNT TOKEN
"""
import asyncio
import collections
import signal
import sys

# A change-feed position no callback of a run reaches.
FAR_AHEAD = 10**15


async def poller(host, port, token, counts):
    request = (
        f"GET /v1/events?after={FAR_AHEAD}&wait=30 HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            while True:
                writer.write(request)
                await writer.drain()
                status = (await reader.readline()).split()[1].decode()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                counts[status] += 1
                if status != "200":
                    await asyncio.sleep(1)
        except (OSError, IndexError, asyncio.IncompleteReadError):
            counts["error"] += 1
            await asyncio.sleep(1)


async def main():
    host, port, count, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    counts = collections.Counter()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(poller(host, port, token, counts)) for _ in range(count)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    answers = " ".join(f"{status}={n}" for status, n in sorted(counts.items()))
    print(f"polls answered: {answers or 'none'}", flush=True)


asyncio.run(main())
