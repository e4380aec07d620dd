"""Jobs take at most JOBS_MAX_SLOT_SHARE of a model's slots, so an interactive request finds
one free while jobs wait queued."""

from __future__ import annotations

from apps.jobs.tests.conftest import echo
from devbackend.testing import devbackend_stats, devbackend_stats_reset
from tests.waiting import eventually


def statuses(jobs, ids) -> list[str]:
    return [job["status"] for job in jobs.status(*ids).values()]


def test_jobs_take_only_their_share_of_a_models_slots(jobs):
    if jobs.workers is not None:
        jobs.workers.start()  # two workers: each could run a job at once
    jobs.add_model("chat-pair", upstream="org/chat-pair@tokens-per-second=20", max_concurrency=2)
    devbackend_stats_reset(jobs.backend_url)
    ids = jobs.submit([echo(30), echo(30), echo(30)], model="chat-pair")
    eventually(lambda: statuses(jobs, ids).count("running") == 1, timeout=30, what="one runs")
    assert statuses(jobs, ids).count("queued") == 2
    with jobs.api() as api:
        answer = api.post(
            "/chat/completions",
            json={"model": "chat-pair", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert answer.status_code == 200, answer.text
    assert "queued" in statuses(jobs, ids)  # served while jobs still wait
    running = []

    def all_done() -> bool:
        now = statuses(jobs, ids)
        running.append(now.count("running"))
        return now == ["done"] * 3

    eventually(all_done, timeout=60, what="all done")
    assert max(running) == 1  # seen at every poll while they ran
    # one job at a time, and the interactive request beside one of them
    assert devbackend_stats(jobs.backend_url)["max_in_flight"] == 2
    jobs.settled()
