"""`make run` with another BACKEND_PORT: the demo catalog follows the port (load_catalog
--base-url), so the development backend there serves active models."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from apps.catalog.models import Backend, CatalogModel
from apps.catalog.probes import catalog_probe
from devbackend.testing import start_devbackend, stop_devbackend
from tests.servers import free_port

pytestmark = pytest.mark.django_db
DEMO = Path(settings.BASE_DIR) / "demo" / "catalog.yaml"
MAKEFILE = Path(settings.BASE_DIR) / "Makefile"


def test_it_serves_the_demo_models_on_another_backend_port():
    port = free_port()
    backend = start_devbackend(port)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        call_command("load_catalog", str(DEMO), "--base-url", f"local={url}", stdout=StringIO())
        assert Backend.objects.get(name="local").base_url == url
        catalog_probe(force=True)
    finally:
        stop_devbackend(backend.process)
    models = CatalogModel.objects.filter(backend__name="local")
    assert models.exists() and all(model.available for model in models)


def test_it_names_an_unknown_backend():
    with pytest.raises(CommandError, match="no backend named lcoal"):
        call_command("load_catalog", str(DEMO), "--base-url", "lcoal=http://x/v1")


PORTS = [("catalog.yaml", "BACKEND_PORT"), ("catalog-llama.yaml", "LLAMA_PORT")]


@pytest.mark.parametrize(("catalog", "variable"), PORTS)
def test_make_passes_its_port_variables_to_the_catalog(catalog, variable):
    """`make run` and `make llama` load their catalog with the port they start the backend on."""
    recipe = MAKEFILE.read_text()
    pattern = (
        rf"load_catalog demo/{re.escape(catalog)} \\\s*"
        rf"--base-url \w+=http://127\.0\.0\.1:\$\({variable}\)/v1"
    )
    assert re.search(pattern, recipe)
    assert f"--port $({variable})" in recipe
