"""anvil jobs: submit inputs (arguments, a file, standard input), follow the jobs to their end,
cancel or delete them, against Anvil running its jobs in-process (as `make run` does)."""

from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal

import httpx
import pytest

from apps.catalog.models import CatalogModel, Kind
from apps.jobs.models import Job
from apps.jobs.queue import jobs_stop
from tests.cli.conftest import failed, usage_error
from tests.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)

UNKNOWN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def jobs_anvil(anvil, server, settings):
    """``anvil`` against a server whose jobs run on its own jobs thread, with a slow model
    (10 tokens a second) to watch a job while it runs."""
    settings.JOBS_IN_PROCESS = True
    settings.REDIS_URL = None
    slow = CatalogModel.objects.create(
        name="chat-slow", backend=server.world.backend,
        upstream_model="org/chat-slow@tokens-per-second=10", kind=Kind.CHAT,
        prompt_price=Decimal("0.5"), completion_price=Decimal("1.5"), context_window=8192,
    )  # fmt: skip
    server.world.grant.allowed_models.add(slow)
    try:
        yield anvil
    finally:
        jobs_stop()


def echo(words: int) -> str:
    """An input whose answer starts with ``words`` known words (the dev backend's ECHO)."""
    return "ECHO: " + " ".join(f"w{i}" for i in range(words))


def api_status(server, ids: list[str]) -> dict:
    url = f"{server.url}/api/v1/jobs/{','.join(ids)}"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {server.api_secret}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def ended(server, ids: list[str]) -> dict | bool:
    found = api_status(server, ids)
    done = all(job["status"] in ("done", "failed", "cancelled") for job in found["jobs"].values())
    return done and found


def test_it_submits_a_file_and_arguments_and_shows_the_jobs_status_and_credits(
    jobs_anvil, server, tmp_path
):
    inputs = tmp_path / "prompts.txt"
    inputs.write_text(f"{echo(3)}\n\n{echo(4)}\n")
    result = jobs_anvil(
        "jobs", "submit", str(inputs), "-i", echo(5), "-m", "chat-small", "--max-tokens", "8"
    )

    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert result.stderr == (
        "Submitted 3 jobs on chat-small; follow them with `anvil jobs status ID[,ID...] --watch`.\n"
    )
    jobs = {job.public_id.hex: job for job in Job.objects.all()}
    assert [jobs[job_id].prompt for job_id in ids] == [echo(5), echo(3), echo(4)]
    assert {job.parameters["max_tokens"] for job in jobs.values()} == {8}
    answer = eventually(lambda: ended(server, ids), timeout=30, what="all three ended")

    table = jobs_anvil("jobs", "status", ",".join(ids[:2]), ids[2])
    assert table.returncode == 0, table.stderr
    header, *rows = [line.split() for line in table.stdout.splitlines()]
    assert header == ["JOB", "STATUS", "MODEL", "RUNTIME", "PROMPT", "COMPLETION", "CREDITS"]
    for job_id, row in zip(ids, rows, strict=True):
        usage = answer["jobs"][job_id]["usage"]
        assert row[:3] == [job_id, "done", "chat-small"] and row[3].endswith("s")
        assert row[4:] == [str(usage["prompt_tokens"]), "8", usage["credits"]]
        assert Decimal(usage["credits"]) > 0

    one = jobs_anvil("jobs", "status", ids[0])
    assert one.stdout.split("\n\n", 1)[1].rstrip("\n") == answer["jobs"][ids[0]]["log"]

    as_json = jobs_anvil("jobs", "status", ",".join(ids), "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == api_status(server, ids)


def test_it_reads_json_inputs_from_stdin_with_their_model_and_parameters(jobs_anvil):
    document = {"inputs": ["One", "Two"], "model": "chat-small", "max_tokens": 4, "system": "S"}
    result = jobs_anvil(
        "jobs", "submit", "-", "--temperature", "0.5", "--stop", ".", "--stop", "!", "--json",
        input=json.dumps(document),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["success"] is True and len(answer["ids"]) == 2
    job = Job.objects.get(public_id=answer["ids"][0])
    assert (job.model_name, job.prompt) == ("chat-small", "One")
    assert job.parameters == {
        "max_tokens": 4, "system": "S", "temperature": 0.5, "stop": [".", "!"],
    }  # fmt: skip


def test_watching_one_job_prints_its_log_as_it_grows_then_the_summary(jobs_anvil, server):
    [job_id] = jobs_anvil("jobs", "submit", "-i", echo(30), "-m", "chat-slow").stdout.split()
    watch = subprocess.Popen(  # noqa: S603 - the installed anvil
        [str(jobs_anvil.command), "jobs", "status", job_id, "--watch", "--interval", "0.3"],
        env=environment(jobs_anvil), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    first = watch.stdout.read(2)  # the log's first characters, printed while the job runs
    assert first == "w0" and Job.objects.get().status == "running"
    rest, stderr = watch.stdout.read(), watch.stderr.read()  # until it exits
    watch.wait(timeout=30)

    assert watch.returncode == 0, stderr
    job = Job.objects.get()
    assert job.status == "done" and first + rest == job.log + "\n"
    assert job.log.startswith(" ".join(f"w{i}" for i in range(30)))
    assert stderr == (
        f"Job {job_id} done after {job.runtime}s: {job.prompt_tokens} prompt and "
        f"{job.completion_tokens} completion tokens, {job.credits_text} credits.\n"
    )


def environment(cli) -> dict:
    """The environment ``cli`` runs ``anvil`` with."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    environment.update(HOME=str(cli.home), XDG_CONFIG_HOME=str(cli.home / ".config"))
    return {**environment, **cli.env}


def test_cancel_stops_a_running_job_and_watch_then_exits_1(jobs_anvil, server):
    [job_id] = jobs_anvil("jobs", "submit", "-i", echo(300), "-m", "chat-slow").stdout.split()
    submitted = jobs_anvil("jobs", "submit", "-i", "Hi", "-m", "chat-small", "--max-tokens", "4")
    [other] = submitted.stdout.split()
    eventually(lambda: Job.objects.get(public_id=job_id).log, timeout=30, what="output")

    cancelled = jobs_anvil("jobs", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"Job {job_id} is ")  # cancelled, or being cancelled
    watch = jobs_anvil("jobs", "status", f"{job_id},{other}", "--watch", "--interval", "0.3")
    assert failed(watch) == f"Error: Not every job is done: {job_id} cancelled."
    rows = [line.split()[:2] for line in watch.stdout.splitlines()[1:]]
    assert rows == [[job_id, "cancelled"], [other, "done"]]  # the table, once: not a terminal

    again = jobs_anvil("jobs", "cancel", job_id)
    assert again.stdout == f"Job {job_id} had already ended (cancelled): nothing to cancel.\n"
    waited = jobs_anvil("jobs", "status", job_id, "--watch", "--json")
    assert json.loads(waited.stdout)["jobs"][job_id]["status"] == "cancelled"
    assert failed(waited) == f"Error: Not every job is done: {job_id} cancelled."


def test_purge_deletes_a_job_and_unknown_ids_are_errors(jobs_anvil, server):
    [job_id] = jobs_anvil("jobs", "submit", "-i", "Hi", "-m", "chat-small").stdout.split()

    purged = jobs_anvil("jobs", "cancel", job_id, "--purge")
    assert purged.stdout == f"Job {job_id} and its output are deleted.\n"
    assert not Job.objects.exists()
    gone = f"No job {job_id} (unknown, deleted, expired, or not yours)."
    assert failed(jobs_anvil("jobs", "cancel", job_id)) == f"Error: {gone} (HTTP 404)"
    status = jobs_anvil("jobs", "status", job_id)
    assert failed(status) == f"Error: {gone}"
    assert status.stdout.splitlines()[1].split() == [job_id, "not", "found"]
    assert failed(jobs_anvil("jobs", "status", UNKNOWN, "--json")).startswith("Error: No job ")
    assert failed(jobs_anvil("jobs", "cancel", "not-an-id")).endswith("(HTTP 404)")


def test_the_servers_refusals_name_the_option(jobs_anvil):
    unknown = failed(jobs_anvil("jobs", "submit", "-i", "Hi", "-m", "nope"))
    assert unknown.startswith("Error: --model: ") and unknown.endswith("(HTTP 400)")
    assert "nope" in unknown
    embedding = failed(jobs_anvil("jobs", "submit", "-i", "Hi", "-m", "embed-small"))
    assert embedding.startswith("Error: --model: ")
    stops = ["--stop", "a", "--stop", "b", "--stop", "c", "--stop", "d", "--stop", "e"]
    too_many = failed(jobs_anvil("jobs", "submit", "-i", "Hi", "-m", "chat-small", *stops))
    assert too_many == "Error: --stop: must be a string or a list of up to 4 strings. (HTTP 400)"
    assert not Job.objects.exists()


def test_bad_arguments(jobs_anvil, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('["one", ')

    assert "No inputs" in usage_error(jobs_anvil("jobs", "submit", "-m", "chat-small"))
    assert "No inputs" in usage_error(jobs_anvil("jobs", "submit", "-", input="\n  \n"))
    assert "not valid JSON" in usage_error(jobs_anvil("jobs", "submit", str(broken)))
    assert "list of strings" in usage_error(jobs_anvil("jobs", "submit", "-", input='{"x": 1}'))
    assert "No such file" in usage_error(jobs_anvil("jobs", "submit", str(tmp_path / "no")))
    assert "--temperature" in usage_error(
        jobs_anvil("jobs", "submit", "-i", "Hi", "--temperature", "3")
    )
    assert "Missing argument" in usage_error(jobs_anvil("jobs", "status"))
    assert "No job id" in usage_error(jobs_anvil("jobs", "status", ","))
    assert "Missing argument" in usage_error(jobs_anvil("jobs", "cancel"))
    assert not Job.objects.exists()
