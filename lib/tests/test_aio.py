"""The asyncio patterns of ``lib.aio``."""

from __future__ import annotations

import asyncio
import gc
import weakref

from lib.aio import at_loop_shutdown, keep


def test_keep_holds_a_task_until_it_is_done():
    async def wait_forever(waiting: asyncio.Event):
        waiting.set()
        await asyncio.get_running_loop().create_future()  # referenced by nothing else

    async def scenario():
        waiting, ended = asyncio.Event(), asyncio.Event()
        kept = weakref.ref(keep(asyncio.ensure_future(wait_forever(waiting))))
        await waiting.wait()  # it waits now: only asyncio's weak reference would be left
        gc.collect()
        task = kept()
        assert task is not None and not task.done()
        task.add_done_callback(lambda _: ended.set())  # called after keep's own, added first
        task.cancel()
        await ended.wait()  # the done callbacks have run
        del task
        gc.collect()
        assert kept() is None  # let go once done

    asyncio.run(scenario())


def test_at_loop_shutdown_closes_when_the_loop_ends():
    closed = []

    async def close():
        closed.append(True)

    async def scenario():
        at_loop_shutdown(asyncio.get_running_loop(), close)
        await asyncio.sleep(0)  # one turn of the loop: its keeper runs, and closes nothing
        assert closed == []

    asyncio.run(scenario())
    assert closed == [True]
