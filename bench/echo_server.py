"""The baseline: a bare `websockets` echo server with the same transport settings as carnb's
(asyncio API, no compression, 16 MiB frames). Prints `ws://...` and serves until killed."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=16 * 1024 * 1024) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}/", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
