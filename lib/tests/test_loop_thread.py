from __future__ import annotations

import asyncio
import threading

from lib.loop_thread import LoopThread


def test_it_runs_coroutines_on_one_loop_in_another_thread():
    loop = LoopThread("test")

    async def where():
        return asyncio.get_running_loop(), threading.current_thread()

    try:
        first, second = loop.run(where()), loop.submit(where()).result(timeout=5)
        assert first == second
        assert first[1] is not threading.current_thread()
    finally:
        loop.stop()


def test_it_lets_what_is_left_clean_up_when_stopped():
    loop = LoopThread("test")
    cleaned = threading.Event()

    async def forever():
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    loop.submit(forever())
    loop.run(asyncio.sleep(0))
    loop.stop()
    assert cleaned.is_set()
