"""An event loop running for ever in a thread of its own, for synchronous code that starts
coroutines and either waits for them or not (a Celery task, a web process's background work).

    loop = LoopThread("jobs")
    loop.run(coroutine())      # wait for its result
    loop.submit(coroutine())   # a concurrent.futures.Future; nobody has to wait

The loop starts on first use (in the process that uses it: a forked child starts its own) and
lives until ``stop``, so what coroutines leave running in the background (a settlement being
written, a slot being given back, pooled connections) finishes on it as it would on a server's
loop. ``stop`` cancels what is left, lets it clean up and closes the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @property
    def running(self) -> bool:
        """Whether this process has started the loop (and not stopped it)."""
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            return self._loop is not None and self._pid == os.getpid() and alive

    def submit(self, coroutine: Coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop())

    def run(self, coroutine: Coroutine) -> Any:
        return self.submit(coroutine).result()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs on the loop, wait for it to clean up, close the loop."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or self._pid != os.getpid():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
