"""Submitting: the reference's exact body works with curl; anything invalid is a 400 naming
the field; keys are refused as the gateway refuses them."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from apps.catalog.models import CatalogModel
from apps.jobs.models import Job
from apps.jobs.submissions import InvalidSubmission, submission_parse
from apps.keys.services import api_key_revoke
from tests.waiting import eventually

# The reference's example body, byte for byte (../shared/reference/gridrepublic-jobs-api.txt).
REFERENCE_BODY = """{
  "app": "gridrepublic:text-inference",
  "commandLine": "{\\"inputs\\": [\\"When does 1+1=10?\\"] }",
  "tag": "gemma:2b"
}"""


def test_the_references_example_works_with_curl(jobs):
    jobs.add_model("gemma:2b", upstream="org/gemma-2b")
    command = [
        "curl", "--silent", "--show-error", "--request", "POST", f"{jobs.url}/jobs",
        "--header", f"Authorization: Bearer {jobs.secret}",
        "--header", "Content-Type: application/json", "--data", REFERENCE_BODY,
    ]  # fmt: skip
    answer = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)  # noqa: S603
    assert answer["success"] is True and len(answer["ids"]) == 1
    [job_id] = answer["ids"]
    command = [
        "curl", "--silent", "--show-error", f"{jobs.url}/jobs/{job_id}",
        "--header", f"Authorization: Bearer {jobs.secret}",
    ]  # fmt: skip

    def done() -> dict | bool:
        found = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)  # noqa: S603
        job = found["jobs"][job_id]
        return job["status"] == "done" and job

    job = eventually(done, timeout=30, what="done")
    state = job["states"]["default"]
    assert state["app"] == "gridrepublic:text-inference" and state["outputFiles"] == []
    assert json.loads(state["commandLine"]) == {"inputs": ["When does 1+1=10?"]}
    assert job["tag"] == "gemma:2b" and job["log"] == state["log"] != ""
    jobs.settled()


INVALID = [
    ({"app": "other", "commandLine": '{"inputs": ["x"]}', "tag": "chat-small"}, "app:"),
    ({"app": "text-inference", "commandLine": "{inputs: [", "tag": "chat-small"}, "commandLine:"),
    ({"app": "text-inference", "commandLine": '{"inputs": []}', "tag": "chat-small"}, "inputs"),
    ({"app": "text-inference", "commandLine": '{"inputs": ["x"]}'}, "tag:"),
    (
        {
            "app": "text-inference",
            "commandLine": '{"inputs": ["x"], "max_tokens": -1}',
            "tag": "chat-small",
        },
        "commandLine.max_tokens",
    ),
    ({"model": "chat-small", "inputs": ["x"], "parameters": {"seed": 1}}, "parameters.seed"),
    ({"model": "chat-small", "inputs": ["x"] * 101}, "more than the 100"),
]


@pytest.mark.parametrize(("body", "named"), INVALID)
def test_it_names_what_is_wrong(body, named):
    with pytest.raises(InvalidSubmission, match=r".") as refused:
        submission_parse(json.dumps(body).encode())
    assert named in str(refused.value)


def test_it_takes_the_native_body_and_generation_parameters():
    native = {"model": "m", "inputs": ["a", "b"], "parameters": {"max_tokens": 5, "stop": "."}}
    submission = submission_parse(json.dumps(native).encode())
    assert (submission.model_name, submission.inputs) == ("m", ["a", "b"])
    assert submission.parameters == {"max_tokens": 5, "stop": "."}
    command = {"inputs": ["a"], "temperature": 0.2, "system": "Be brief."}
    reference = {"app": "text-inference", "commandLine": json.dumps(command), "tag": "m"}
    assert submission_parse(json.dumps(reference).encode()).parameters == {
        "temperature": 0.2, "system": "Be brief.",
    }  # fmt: skip


def refused(jobs, body: dict, *, secret: str | None = None) -> tuple[int, dict]:
    with jobs.api(secret) as api:
        answer = api.post("/jobs", json=body)
    return answer.status_code, answer.json()


@pytest.mark.parametrize("jobs", ["in_process"], indirect=True)
def test_it_refuses_models_the_key_can_not_use_for_jobs(jobs):
    CatalogModel.objects.filter(name="chat-slow").update(active=False)
    jobs.world.grant.allowed_models.add(jobs.world.embed_model)
    cases = {
        "nope": "does not exist",
        "chat-slow": "inactive",
        "embed-small": "embedding model",
    }
    for model, message in cases.items():
        body = {"app": "text-inference", "commandLine": '{"inputs": ["x"]}', "tag": model}
        status, answer = refused(jobs, body)
        assert status == 400 and answer["success"] is False
        assert answer["error"].startswith("tag: ") and message in answer["error"], answer
    jobs.world.grant.allowed_models.remove(jobs.world.embed_model)
    status, answer = refused(jobs, {"model": "embed-small", "inputs": ["x"]})
    assert (
        status == 400 and answer["error"].startswith("model: ") and "may not use" in answer["error"]
    )
    assert not Job.objects.exists()


@pytest.mark.parametrize("jobs", ["in_process"], indirect=True)
def test_it_refuses_keys_as_the_gateway_does(jobs):
    body = {"model": "chat-small", "inputs": ["x"]}
    with httpx.Client(base_url=jobs.url, trust_env=False) as api:
        assert api.post("/jobs", json=body).status_code == 401
        answer = api.post("/jobs", json=body, headers={"Authorization": "Bearer anv-nonsense"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    api_key_revoke(key=jobs.key, actor=jobs.world.bob)
    status, answer = refused(jobs, body)
    assert status == 401 and "revoked" in answer["error"]["message"]


def test_it_is_documented(client, world):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    submit = schema["paths"]["/api/v1/jobs"]["post"]
    assert submit["security"] == [{"ApiKey": []}]
    assert set(submit["responses"]) == {"200", "400", "401", "403"}
    detail = schema["paths"]["/api/v1/jobs/{ids}"]
    assert set(detail) >= {"get", "delete"}
