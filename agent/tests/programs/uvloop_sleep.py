"""asyncio on uvloop: a callback every 100 ms that blocks the loop 800 ms every 5th time."""
import asyncio
import sys
import time

import uvloop

ticks = 0


def tick(loop):
    global ticks
    ticks += 1
    print(f"tick {ticks}", flush=True)
    if ticks % 5 == 0:
        time.sleep(0.8)
    loop.call_later(0.1, tick, loop)


async def main():
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, tick, loop)
    await asyncio.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)


uvloop.install()
asyncio.run(main())
