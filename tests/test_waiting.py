"""The tests' one way of waiting (``tests.waiting``): it returns as soon as the check passes,
and fails saying what was awaited (or with the check's own assertion) once the time is up."""

from __future__ import annotations

import asyncio

import pytest

from tests.waiting import aeventually, eventually


def tries_until(passing_at: int, value=True):
    """A check that fails (asserts) until its ``passing_at``-th try, then returns ``value``."""
    tries = []

    def check():
        tries.append(1)
        assert len(tries) >= passing_at, f"try {len(tries)}"
        return value

    return check, tries


def test_it_returns_the_checks_value_once_it_passes():
    check, tries = tries_until(3, value="found")
    assert eventually(check, timeout=5) == "found"
    assert len(tries) == 3
    assert eventually(lambda: None) is None  # a check that only asserts passes by returning


def test_it_fails_with_the_last_assertion_or_with_what_was_awaited():
    check, _ = tries_until(10**9)
    with pytest.raises(AssertionError, match=r"^try \d+"):
        eventually(check, timeout=0.05)
    with pytest.raises(AssertionError, match=r"not true after 0\.05 s: the door open"):
        eventually(lambda: False, timeout=0.05, what="the door open")


def test_the_async_variant_lets_the_loop_run_between_tries():
    async def scenario():
        opened = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, opened.set)
        await aeventually(opened.is_set, timeout=5, what="the door open")

        async def is_open():
            return opened.is_set() and "open"

        return await aeventually(is_open, what="the door open")  # a coroutine function

    assert asyncio.run(scenario()) == "open"


def test_the_async_variant_fails_as_the_sync_one_does():
    check, _ = tries_until(10**9)
    with pytest.raises(AssertionError, match=r"^try \d+"):
        asyncio.run(aeventually(check, timeout=0.05))
    with pytest.raises(AssertionError, match=r"not true after 0\.05 s: the door open"):
        asyncio.run(aeventually(lambda: False, timeout=0.05, what="the door open"))
