"""``anvil jobs``: submit prompts to run later as asynchronous jobs, follow them, cancel them
(the jobs API: ``POST /api/v1/jobs``, ``GET /api/v1/jobs/{ids}``, ``DELETE /api/v1/jobs/{id}``).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse

import click

from anvil_cli.chat import default_model
from anvil_cli.client import ApiError, Client
from anvil_cli.output import echo_json, note, table
from anvil_cli.session import Session, pass_session

JOBS = "/api/v1/jobs"
MAX_IDS = 100  # ids per GET /api/v1/jobs/{ids}; more are asked in several requests
ENDED = {"done", "failed", "cancelled"}
PARAMETERS = ("max_tokens", "temperature", "top_p", "stop", "system")
# The API's field names, as the CLI's options: a refusal names what the user typed.
OPTIONS = {
    "model": "--model",
    **{f"parameters.{name}": f"--{name.replace('_', '-')}" for name in PARAMETERS},
}


@click.group(short_help="Asynchronous jobs: submit, follow, cancel.")
def jobs() -> None:
    """Asynchronous jobs: each input runs later on the server as one chat request of the API
    key, charged as one; its output (the log) grows while it runs and is kept for some days."""


def _ids(values: tuple[str, ...]) -> list[str]:
    """IDS as typed: several arguments, comma-separated, or both; each once, in order."""
    ids = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not ids:
        raise click.UsageError("No job id given.")
    return list(dict.fromkeys(ids))


# --- submit ----------------------------------------------------------------------------------


def _read_inputs(text: str, form: str, where: str) -> tuple[list[str], dict]:
    """The inputs of a file and, for JSON, what else it sets (model, parameters). ``lines``:
    one input per non-blank line. ``json``: a list of strings, or an object with ``inputs``
    (and optionally ``model`` and the generation parameters, at its top or in ``parameters``).
    ``auto``: JSON when the text starts with ``[`` or ``{``, else lines."""
    if form == "auto":
        form = "json" if text.lstrip().startswith(("[", "{")) else "lines"
    if form == "lines":
        return [line for line in text.splitlines() if line.strip()], {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.UsageError(
            f"{where} is not valid JSON ({exc}); use --format lines to take it line by line."
        ) from None
    if isinstance(data, dict):
        extra = {name: data[name] for name in ("model", *PARAMETERS) if name in data}
        if isinstance(data.get("parameters"), dict):
            extra.update(data["parameters"])
        data = data.get("inputs")
    else:
        extra = {}
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise click.UsageError(
            f'{where}: JSON inputs are a list of strings, or an object {{"inputs": [...]}}.'
        )
    return data, extra


@jobs.command(short_help="Submit inputs as jobs; print their ids.")
@click.argument("source", metavar="[FILE|-]", required=False, type=click.File("r"))
@click.option(
    "--input", "-i", "inputs", multiple=True, metavar="TEXT", help="An input (may be repeated)."
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["auto", "lines", "json"]),
    default="auto",
    show_default=True,
    help="FILE's form: one input per line, or JSON; auto: JSON if it starts with [ or {.",
)
@click.option(
    "--model", "-m", envvar="ANVIL_MODEL", help="Default: the cheapest chat model of yours."
)
@click.option("--system", "-s", help="A system message before each input.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens in each answer.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature, 0 to 2.")
@click.option("--top-p", type=click.FloatRange(0, 1), help="Nucleus sampling, 0 to 1.")
@click.option("--stop", multiple=True, metavar="TEXT", help="Stop at this text (up to 4 times).")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@pass_session
def submit(session: Session, source, inputs, form, model, as_json, stop, **options) -> None:
    """Submit each input as a job and print the jobs' ids, one a line, in the inputs' order.

    The inputs come from FILE (- reads standard input): one a line (blank lines skipped), or
    JSON: ["first", "second"], or {"inputs": [...], "model": ..., "max_tokens": ...} (the
    options win over what it sets). --input adds inputs given on the command line."""
    texts, extra = list(inputs), {}
    if source is not None:
        where = "standard input" if source.name == "<stdin>" else source.name
        read, extra = _read_inputs(source.read(), form, where)
        texts += read
    if not texts:
        raise click.UsageError("No inputs: give a FILE (or - for standard input) or --input.")
    parameters = {name: value for name, value in extra.items() if name in PARAMETERS}
    options["stop"] = list(stop) if len(stop) > 1 else (stop[0] if stop else None)
    parameters.update({name: value for name, value in options.items() if value is not None})
    client, key = session.client(), session.needed("api_key")
    model = model or extra.get("model") or default_model(client, key)
    body = {"model": model, "inputs": texts, "parameters": parameters}
    try:
        data = client.post(JOBS, body, key=key).data
    except ApiError as exc:
        raise exc.with_params(OPTIONS) from None
    if as_json:
        echo_json(data)
        return
    for job_id in data["ids"]:
        click.echo(job_id)
    count = len(data["ids"])
    note(
        f"Submitted {count} job{'s' * (count != 1)} on {model}; follow them with "
        f"`anvil jobs status ID[,ID...] --watch`."
    )


# --- status ----------------------------------------------------------------------------------


def _fetch(client: Client, key: str, ids: list[str]) -> dict:
    """GET /api/v1/jobs/{ids}, in requests of up to MAX_IDS ids, the answers merged."""
    answer: dict = {"success": True, "jobs": {}}
    for start in range(0, len(ids), MAX_IDS):
        part = urllib.parse.quote(",".join(ids[start : start + MAX_IDS]), safe=",")
        answer["jobs"].update(client.get(f"{JOBS}/{part}", key=key).data["jobs"])
    return answer


def _runtime(job: dict) -> str:
    seconds = int(job.get("runtime") or 0)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _tokens(value) -> str:
    return "-" if value is None else str(value)


def _rows(ids: list[str], found: dict) -> list[tuple]:
    rows = []
    for job_id in ids:
        job = found.get(job_id) or {"status": "not_found"}
        if job["status"] == "not_found":
            rows.append((job_id, "not found", "", "", "", "", ""))
            continue
        usage = job.get("usage") or {}
        rows.append(
            (
                job_id,
                job["status"],
                job.get("tag", ""),
                _runtime(job),
                _tokens(usage.get("prompt_tokens")),
                _tokens(usage.get("completion_tokens")),
                _tokens(usage.get("credits")),
            )
        )
    return rows


def _table(ids: list[str], found: dict) -> str:
    headers = ["JOB", "STATUS", "MODEL", "RUNTIME", "PROMPT", "COMPLETION", "CREDITS"]
    return table(_rows(ids, found), headers=headers, right={3, 4, 5, 6})


def _not_found(ids: list[str], found: dict) -> None:
    missing = [i for i in ids if (found.get(i) or {"status": "not_found"})["status"] == "not_found"]
    if missing:
        raise click.ClickException(
            f"No job {', '.join(missing)} (unknown, deleted, expired, or not yours)."
        )


@jobs.command(short_help="Jobs' status, runtime and credits; --watch to follow.")
@click.argument("ids", nargs=-1, required=True, metavar="ID[,ID...]")
@click.option(
    "--watch", "-w", is_flag=True, help="Poll until every job has ended, showing progress."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: seconds between two polls.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@pass_session
def status(session: Session, ids, watch: bool, interval: float, as_json: bool) -> None:
    """Each job's status, model, runtime, tokens and credits (known once it ended); with one ID,
    its log (the output so far) too.

    --watch polls until every job has ended. With one ID the log is printed as it grows
    (standard output holds the log alone; the summary goes to standard error); with several,
    the table is redrawn in place on a terminal. It exits with 0 when every job is done, 1 when
    one failed or was cancelled; with --json it prints only the last answer. Ctrl-C stops
    watching, not the jobs.

    An unknown ID (or another person's) is an error, exit status 1."""
    ids = _ids(ids)
    client, key = session.client(), session.needed("api_key")
    if not watch:
        answer = _fetch(client, key, ids)
        if as_json:
            echo_json(answer)
        else:
            click.echo(_table(ids, answer["jobs"]))
            job = answer["jobs"].get(ids[0]) or {}
            if len(ids) == 1 and job.get("log"):
                click.echo()
                click.echo(job["log"].rstrip("\n"))
        _not_found(ids, answer["jobs"])
        return
    if as_json:
        answer = _poll(client, key, ids, interval, lambda found: None)
        echo_json(answer)
        _not_found(ids, answer["jobs"])
    elif len(ids) == 1:
        answer = _poll(client, key, ids, interval, _LogPrinter(ids[0]))
        _not_found(ids, answer["jobs"])
        _summary(ids[0], answer["jobs"][ids[0]])
    else:
        redraw = _Redraw(ids)
        answer = _poll(client, key, ids, interval, redraw)
        redraw.final(answer["jobs"])
        _not_found(ids, answer["jobs"])
    _not_done(ids, answer["jobs"])


def _poll(client: Client, key: str, ids: list[str], interval: float, show) -> dict:
    """Ask until every job has ended (or is not found), calling ``show`` with each answer."""
    while True:
        answer = _fetch(client, key, ids)
        show(answer["jobs"])
        if all(job["status"] in ENDED | {"not_found"} for job in answer["jobs"].values()):
            return answer
        time.sleep(interval)


class _LogPrinter:
    """Prints one job's log as it grows: what each answer adds to what was printed."""

    def __init__(self, job_id: str) -> None:
        self.job_id, self.printed = job_id, ""

    def __call__(self, found: dict) -> None:
        log = (found.get(self.job_id) or {}).get("log") or ""
        if not log.startswith(self.printed):  # a lost worker's job starts again from scratch
            if not self.printed.endswith("\n"):
                click.echo()
            note("(The job started again: its worker was lost. Its log begins anew.)")
            self.printed = ""
        if len(log) > len(self.printed):
            click.echo(log[len(self.printed) :], nl=False)
            sys.stdout.flush()
            self.printed = log


def _summary(job_id: str, job: dict) -> None:
    log = job.get("log") or ""
    if log and not log.endswith("\n"):
        click.echo()
    usage = job.get("usage") or {}
    note(
        f"Job {job_id} {job['status']} after {_runtime(job)}: "
        f"{_tokens(usage.get('prompt_tokens'))} prompt and "
        f"{_tokens(usage.get('completion_tokens'))} completion tokens, "
        f"{_tokens(usage.get('credits'))} credits."
    )


class _Redraw:
    """The table of several jobs, drawn again over itself on a terminal at each answer (and
    only once, at the end, when standard output is not one)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids, self.lines = ids, 0
        self.terminal = sys.stdout.isatty()

    def __call__(self, found: dict) -> None:
        if self.terminal:
            self._draw(found)

    def _draw(self, found: dict) -> None:
        text = _table(self.ids, found)
        if self.lines:
            click.echo(f"\x1b[{self.lines}F\x1b[J", nl=False)
        click.echo(text)
        self.lines = text.count("\n") + 1

    def final(self, found: dict) -> None:
        if not self.terminal:
            click.echo(_table(self.ids, found))


def _not_done(ids: list[str], found: dict) -> None:
    ended = [(i, found[i]["status"]) for i in ids if found[i]["status"] in ENDED - {"done"}]
    if ended:
        said = ", ".join(f"{job_id} {state}" for job_id, state in ended)
        raise click.ClickException(f"Not every job is done: {said}.")


# --- cancel ----------------------------------------------------------------------------------


@jobs.command(short_help="Cancel a queued or running job (--purge: delete it).")
@click.argument("job_id", metavar="ID")
@click.option("--purge", is_flag=True, help="Delete the job and its output instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@pass_session
def cancel(session: Session, job_id: str, purge: bool, as_json: bool) -> None:
    """Cancel the job ID: a queued one at once; a running one within a second, its output so far
    kept and what it generated charged. A job that has ended stays as it is.

    --purge deletes the job and its output (cancelling it first if it runs)."""
    job_id = job_id.strip()
    if not job_id or "," in job_id:
        raise click.UsageError(f"{job_id!r} is not one job id.")
    client, key = session.client(), session.needed("api_key")
    path = f"{JOBS}/{urllib.parse.quote(job_id, safe='')}"
    gone = f"No job {job_id} (unknown, deleted, expired, or not yours)."
    before = client.get(path, key=key).data["jobs"].get(job_id) or {"status": "not_found"}
    if before["status"] == "not_found":
        raise ApiError(gone, status=404)
    query = {"purge": "true"} if purge else None
    try:
        data = client.delete(path, key=key, query=query).data
    except ApiError as exc:
        raise ApiError(gone, status=404) if exc.status == 404 else exc from None
    if as_json:
        echo_json(data)
        return
    job = next(iter(data["jobs"].values()))
    state = job["status"]
    credits = (job.get("usage") or {}).get("credits")
    if state == "deleted":
        click.echo(f"Job {job_id} and its output are deleted.")
    elif before["status"] in ENDED:
        click.echo(f"Job {job_id} had already ended ({before['status']}): nothing to cancel.")
    elif state == "cancelled" and credits not in (None, "0"):
        click.echo(f"Job {job_id} is cancelled; {credits} credits charged for what it generated.")
    elif state == "cancelled":
        click.echo(f"Job {job_id} is cancelled before it ran; nothing charged.")
    else:
        click.echo(
            f"Job {job_id} is being cancelled: it stops within a second; what it generated "
            "is charged (see `anvil jobs status`)."
        )
