"""Backend health probes: a model follows its backend's answer, the operator's switch stays."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.catalog.models import Backend, CatalogModel
from apps.catalog.probes import catalog_probe
from apps.catalog.tasks import probe_backends
from devbackend.testing import start_devbackend, stop_devbackend
from portal.celery import app as celery_app

pytestmark = pytest.mark.django_db
SECRET = "probe-secret-0123456789"


@pytest.fixture(scope="module")
def devbackend():
    backend = start_devbackend(api_key=SECRET)
    yield backend.url
    stop_devbackend(backend.process)


@pytest.fixture
def backend(world, devbackend, monkeypatch) -> Backend:
    monkeypatch.setenv("PROBE_TEST_BACKEND_KEY", SECRET)
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.api_key_env = "PROBE_TEST_BACKEND_KEY"
    world.backend.save()
    return world.backend


@pytest.fixture
def eager_tasks():
    """Tasks run in-process even though REDIS_URL (a real broker) is set for the tests."""
    previous, celery_app.conf.task_always_eager = celery_app.conf.task_always_eager, True
    yield
    celery_app.conf.task_always_eager = previous


def dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def models_state() -> set[tuple]:
    return set(CatalogModel.objects.values_list("name", "active", "healthy"))


def later(minutes: int) -> dt.datetime:
    return timezone.now() + dt.timedelta(minutes=minutes)


def test_it_marks_the_models_of_an_answering_backend_healthy(backend):
    CatalogModel.objects.update(healthy=False)
    [result] = catalog_probe()
    assert (result.backend, result.healthy) == ("local", True)
    assert models_state() == {("chat-small", True, True), ("embed-small", True, True)}
    assert all(m.last_checked_at for m in CatalogModel.objects.all())


def test_it_flips_health_with_a_dead_port_and_back_without_touching_active(backend, devbackend):
    catalog_probe()
    backend.base_url = dead_url()
    backend.save()
    [down] = catalog_probe(now=later(1))
    assert not down.healthy and "no answer" in down.detail
    assert models_state() == {("chat-small", True, False), ("embed-small", True, False)}
    backend.base_url = f"{devbackend}/v1"
    backend.save()
    assert catalog_probe(now=later(2))[0].healthy
    assert models_state() == {("chat-small", True, True), ("embed-small", True, True)}


def test_it_counts_a_refused_secret_as_down(backend, monkeypatch):
    monkeypatch.setenv("PROBE_TEST_BACKEND_KEY", "wrong-secret")
    [result] = catalog_probe()
    assert (result.healthy, result.detail) == (False, "HTTP 401")


def test_it_probes_once_when_run_twice(backend):
    assert probe_backends() == 1
    checked = set(CatalogModel.objects.values_list("last_checked_at", flat=True))
    assert probe_backends() == 0  # claimed by the first run moments ago
    assert set(CatalogModel.objects.values_list("last_checked_at", flat=True)) == checked
    assert probe_backends(force=True) == 1


def test_it_does_not_probe_a_backend_without_models(backend):
    Backend.objects.create(name="spare", base_url=dead_url())
    assert [r.backend for r in catalog_probe()] == ["local"]


def test_it_shows_an_unhealthy_model_as_inactive_on_the_models_page(client, world, backend):
    backend.base_url = dead_url()
    backend.save()
    catalog_probe()
    client.force_login(world.bob)
    response = client.get(reverse("catalog:models"), {"tag": "Inactive"})
    assert [row.model.name for row in response.context["rows"]] == ["chat-small", "embed-small"]


def test_it_probes_a_backend_as_soon_as_an_operator_saves_it(
    admin_client, backend, django_capture_on_commit_callbacks, eager_tasks
):
    catalog_probe()  # just probed: only a forced probe would look again
    url = reverse("admin:catalog_backend_change", args=[backend.pk])
    form = {
        "name": "local",
        "base_url": dead_url(),
        "api_key_env": "PROBE_TEST_BACKEND_KEY",
        "responses": "translated",
    }
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(url, form)
    assert response.status_code == 302 and len(callbacks) == 1
    assert not CatalogModel.objects.filter(healthy=True).exists()
