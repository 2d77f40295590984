"""Holds N connections to a web server, half silent, half a slow-loris request
head; reopens each one the server closes.  Run as its own process by the web
fault test, so the attack and the probes do not share an event loop:

    python idle_attack.py PORT N SECONDS      (prints its counts as JSON)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import sys


class Attack:
    """Keeps *n* connections open to the server, reopening each one it closes."""

    def __init__(self, port: int, n: int) -> None:
        self.port = port
        self.n = n
        self.open = 0
        self.closed_by_server = 0
        self.answered_503 = 0
        self.stop = asyncio.Event()

    async def _one(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        slow = i % 2 == 1
        while not self.stop.is_set():
            sock = socket.socket()
            sock.setblocking(False)
            try:
                async with asyncio.timeout(5):
                    await loop.sock_connect(sock, ("127.0.0.1", self.port))
                self.open += 1
                try:
                    if slow:
                        await loop.sock_sendall(sock, b"GET /c/kmers HTTP/1.1\r\n")
                        for k in range(1000):
                            await loop.sock_sendall(sock, f"X-Slow-{k}: a\r\n".encode())
                            async with asyncio.timeout(1.0):
                                with contextlib.suppress(TimeoutError):
                                    if not await loop.sock_recv(sock, 4096):
                                        break
                    else:
                        data = await loop.sock_recv(sock, 4096)
                        if data.startswith(b"HTTP/1.1 503"):
                            self.answered_503 += 1
                finally:
                    self.open -= 1
                self.closed_by_server += 1
            except (OSError, TimeoutError):
                await asyncio.sleep(0.2)
            finally:
                sock.close()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(self.n):
                tg.create_task(self._one(i))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)
            await self.stop.wait()
            for t in list(tg._tasks):
                t.cancel()


async def main(port: int, n: int, seconds: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 200
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    attack = Attack(port, n)
    task = asyncio.create_task(attack.run())
    peak = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(0.25)
        peak = max(peak, attack.open)
    attack.stop.set()
    await task
    print(json.dumps({"peak": peak, "closed_by_server": attack.closed_by_server,
                      "answered_503": attack.answered_503}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
