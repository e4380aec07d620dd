from __future__ import annotations

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import Backend, CatalogModel
from apps.catalog.services import (
    CatalogFileError,
    CatalogLoadResult,
    catalog_load,
    catalog_parse,
)
from apps.core.exceptions import ApplicationError

pytestmark = pytest.mark.django_db

BACKENDS = """\
backends:
  - name: local
    base_url: http://127.0.0.1:8001/v1
    api_key_env: LOCAL_BACKEND_KEY
"""
SMALL = """\
  - name: anvil-small
    backend: local
    upstream_model: org/Small-Instruct
    kind: chat
    prompt_price: 0.5
    completion_price: 1.5
    context_window: 8192
    tags: [FC]
"""
EMBED = """\
  - name: anvil-embed
    backend: local
    kind: embedding
    prompt_price: 0.1
    context_window: 512
    max_concurrency: 8
    queue_size: 0
    tags: [EMB]
"""
LARGE = """\
  - name: anvil-large
    backend: local
    kind: chat
    prompt_price: 2
    completion_price: 6
    context_window: 32768
    tags: [FC, non-commercial]
"""


def catalog(*models: str, backends: str = BACKENDS) -> str:
    return backends + "models:\n" + "".join(models)


GOOD = catalog(SMALL, EMBED, LARGE)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, *flags: str) -> str:
    out = StringIO()
    call_command("load_catalog", str(path), *flags, stdout=out)
    return out.getvalue()


def snapshot() -> tuple[list[dict], list[dict]]:
    """Every column of every catalog row, to prove a load wrote nothing."""
    return (
        list(Backend.objects.order_by("name").values()),
        list(CatalogModel.objects.order_by("name").values()),
    )


def test_it_creates_backends_and_models_from_a_file(tmp_path):
    output = load(write(tmp_path, GOOD))
    assert "backends: 1 created" in output and "models: 3 created, 0 updated" in output
    backend = Backend.objects.get()
    assert (backend.name, backend.base_url) == ("local", "http://127.0.0.1:8001/v1")
    assert backend.api_key_env == "LOCAL_BACKEND_KEY"
    small = CatalogModel.objects.get(name="anvil-small")
    assert small.backend == backend and small.upstream_model == "org/Small-Instruct"
    assert (small.kind, small.context_window, small.tags) == ("chat", 8192, ["FC"])
    assert (small.prompt_price, small.completion_price) == (Decimal("0.5"), Decimal("1.5"))
    assert (small.max_concurrency, small.queue_size, small.active) == (4, 16, True)
    large = CatalogModel.objects.get(name="anvil-large")
    assert large.tags == ["FC", "non-commercial"] and large.is_non_commercial


def test_it_stores_prices_exactly(tmp_path):
    load(write(tmp_path, GOOD))
    embed = CatalogModel.objects.get(name="anvil-embed")
    assert embed.prompt_price == Decimal("0.1")
    assert (embed.max_concurrency, embed.queue_size) == (8, 0)
    # A binary float has only ~16 significant digits: it would store 123456789012.123460.
    exact = EMBED.replace("prompt_price: 0.1", "prompt_price: 123456789012.123456")
    load(write(tmp_path, catalog(exact)))
    embed.refresh_from_db()
    assert embed.prompt_price == Decimal("123456789012.123456")


def test_it_parses_non_integer_numbers_as_exact_decimals():
    data = catalog_parse(text="a: 0.1\nb: 1_000.25\nc: 3\n")
    assert data == {"a": Decimal("0.1"), "b": Decimal("1000.25"), "c": 3}
    assert str(data["a"]) == "0.1" and isinstance(data["a"], Decimal)


def test_it_defaults_completion_price_and_upstream_model_to_the_others():
    catalog_load(data=catalog_parse(text=GOOD))
    embed = CatalogModel.objects.get(name="anvil-embed")
    assert embed.completion_price == Decimal("0.1")
    assert embed.upstream_model == "anvil-embed"


def test_it_reports_what_the_service_did():
    result = catalog_load(data=catalog_parse(text=GOOD))
    assert result == CatalogLoadResult(backends_created=1, models_created=3)
    again = catalog_load(data=catalog_parse(text=GOOD))
    assert again == CatalogLoadResult(backends_unchanged=1, models_unchanged=3)


def test_it_changes_nothing_on_a_second_load(tmp_path):
    path = write(tmp_path, GOOD)
    load(path)
    before = snapshot()
    with CaptureQueriesContext(connection) as queries:
        output = load(path)
    assert "backends: 0 created, 0 updated, 1 unchanged" in output
    assert "models: 0 created, 0 updated, 3 unchanged, 0 deactivated" in output
    writes = [q["sql"] for q in queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    assert snapshot() == before


def test_it_updates_an_edited_price_in_place(tmp_path):
    load(write(tmp_path, GOOD))
    public_id = CatalogModel.objects.get(name="anvil-small").public_id
    edited = GOOD.replace("completion_price: 1.5", "completion_price: 1.75")
    output = load(write(tmp_path, edited))
    assert "models: 0 created, 1 updated, 2 unchanged" in output
    small = CatalogModel.objects.get(name="anvil-small")
    assert small.completion_price == Decimal("1.75") and small.public_id == public_id


def test_it_moves_a_model_to_another_backend(tmp_path):
    load(write(tmp_path, GOOD))
    second = "  - name: gpu-2\n    base_url: http://gpu-node-2:8000/v1\n"
    moved = SMALL.replace("backend: local", "backend: gpu-2")
    output = load(write(tmp_path, catalog(moved, EMBED, LARGE, backends=BACKENDS + second)))
    assert "backends: 1 created, 0 updated, 1 unchanged" in output
    assert "models: 0 created, 1 updated, 2 unchanged" in output
    assert CatalogModel.objects.get(name="anvil-small").backend.base_url.startswith("http://gpu")


def test_it_uses_a_backend_that_exists_only_in_the_database(tmp_path):
    Backend.objects.create(name="local", base_url="http://127.0.0.1:8001/v1")
    load(write(tmp_path, catalog(SMALL, backends="")))
    assert CatalogModel.objects.get(name="anvil-small").backend.name == "local"


def test_it_keeps_models_missing_from_the_file_active(tmp_path):
    load(write(tmp_path, GOOD))
    output = load(write(tmp_path, catalog(SMALL, EMBED)))
    assert "0 deactivated" in output
    assert CatalogModel.objects.get(name="anvil-large").active


def test_it_deactivates_missing_models_with_the_flag(tmp_path):
    load(write(tmp_path, GOOD))
    path = write(tmp_path, catalog(SMALL, EMBED))
    assert "1 deactivated" in load(path, "--deactivate-missing")
    large = CatalogModel.objects.get(name="anvil-large")
    assert not large.active
    assert CatalogModel.objects.get(name="anvil-small").active
    assert "0 updated, 2 unchanged, 0 deactivated" in load(path, "--deactivate-missing")


def test_it_reactivates_a_model_the_file_names_again(tmp_path):
    load(write(tmp_path, catalog(SMALL, EMBED)))
    CatalogModel.objects.filter(name="anvil-small").update(active=False)
    assert "1 updated" in load(write(tmp_path, catalog(SMALL, EMBED)))
    assert CatalogModel.objects.get(name="anvil-small").active


def test_it_writes_nothing_on_a_dry_run(tmp_path):
    load(write(tmp_path, catalog(SMALL)))
    before = snapshot()
    path = write(tmp_path, GOOD.replace("prompt_price: 0.5", "prompt_price: 0.6"))
    output = load(path, "--dry-run", "--deactivate-missing")
    assert "Dry run, nothing written" in output
    assert "models: 2 created, 1 updated, 0 unchanged" in output
    assert snapshot() == before


def bad_model(**fields: str | None) -> str:
    """A third model entry, valid unless ``fields`` (raw YAML values; None drops one) spoil it."""
    entry = {
        "name": "bad-model",
        "backend": "local",
        "kind": "chat",
        "prompt_price": "1",
        "context_window": "1024",
    }
    entry.update(fields)
    lines = [f"{key}: {value}" for key, value in entry.items() if value is not None]
    return "  - " + "\n    ".join(lines) + "\n"


# Each good part of these files would change the database (a new backend, a new price) if a
# load wrote anything before finding the error.
EDITED = SMALL.replace("prompt_price: 0.5", "prompt_price: 0.7")
NEW_BACKEND = BACKENDS + "  - name: gpu-1\n    base_url: http://gpu-node-1:8000/v1\n"
M2 = "models[2] (bad-model): "
BAD_FILES = {
    "negative price": (
        catalog(EDITED, EMBED, bad_model(prompt_price="-0.5")),
        M2 + "prompt_price must be a number >= 0, got -0.5",
    ),
    "non-numeric price": (
        catalog(EDITED, EMBED, bad_model(completion_price="abc")),
        M2 + "completion_price must be a number >= 0, got 'abc'",
    ),
    "boolean price": (
        catalog(EDITED, EMBED, bad_model(prompt_price="true")),
        M2 + "prompt_price must be a number >= 0, got True",
    ),
    "not-a-number price": (
        catalog(EDITED, EMBED, bad_model(prompt_price=".nan")),
        M2 + "prompt_price must be a number >= 0, got NaN",
    ),
    "price too precise": (
        catalog(EDITED, EMBED, bad_model(prompt_price="0.1234567")),
        M2 + "prompt_price must be below 1000000000000 with at most 6 decimal places",
    ),
    "unknown kind": (
        catalog(EDITED, EMBED, bad_model(kind="audio")),
        M2 + "kind must be one of chat, embedding, vlm, got 'audio'",
    ),
    "unknown tag": (
        catalog(EDITED, EMBED, bad_model(tags="[FC, fast]")),
        M2 + "tags must be a list of tags from FC, EMB, VLM, non-commercial, got ['FC', 'fast']",
    ),
    "context window below 1": (
        catalog(EDITED, EMBED, bad_model(context_window="0")),
        M2 + "context_window must be a whole number >= 1, got 0",
    ),
    "fractional context window": (
        catalog(EDITED, EMBED, bad_model(context_window="1024.5")),
        M2 + "context_window must be a whole number >= 1, got 1024.5",
    ),
    "max concurrency below 1": (
        catalog(EDITED, EMBED, bad_model(max_concurrency="0")),
        M2 + "max_concurrency must be a whole number >= 1, got 0",
    ),
    "missing required field": (
        catalog(EDITED, EMBED, bad_model(context_window=None)),
        M2 + "context_window is required",
    ),
    "unknown field": (
        catalog(EDITED, EMBED, bad_model(promt_price="1")),
        M2 + "unknown field(s) promt_price",
    ),
    "undefined backend": (
        catalog(EDITED, EMBED, bad_model(backend="gpu-9"), backends=NEW_BACKEND),
        M2 + "backend 'gpu-9' is defined neither under backends nor in the database",
    ),
    "duplicate model name": (
        catalog(EDITED, EMBED, bad_model(name="anvil-small")),
        "models[2] (anvil-small): name is already used by models[0] (anvil-small)",
    ),
    "model entry not a mapping": (
        catalog(EDITED, EMBED, "  - bad-model\n"),
        "models[2] must be a mapping of fields, got a str",
    ),
    "duplicate backend name": (
        catalog(EDITED, backends=BACKENDS + BACKENDS.removeprefix("backends:\n")),
        "backends[1] (local): name is already used by backends[0] (local)",
    ),
    "bad base_url": (
        catalog(EDITED, backends=BACKENDS + "  - name: gpu-1\n    base_url: gpu-node-1:8000\n"),
        "backends[1] (gpu-1): base_url must be an http:// or https:// URL like http://gpu-node-1:8000/v1,"
        " got 'gpu-node-1:8000'",
    ),
    "backend name not a slug": (
        catalog(EDITED, backends=BACKENDS + "  - name: gpu 1\n    base_url: http://g:1/v1\n"),
        "backends[1] (gpu 1): name must be a slug",
    ),
    "backend missing base_url": (
        catalog(EDITED, backends=BACKENDS + "  - name: gpu-1\n"),
        "backends[1] (gpu-1): base_url is required",
    ),
    "unknown top-level key": (
        GOOD + "modles: []\n",
        "unknown top-level key(s) modles; known keys are backends, models",
    ),
    "no models": (BACKENDS, "models is required"),
    "models not a list": (BACKENDS + "models: anvil-small\n", "models must be a list"),
    "YAML syntax error": (
        catalog(EDITED, EMBED, "  - name: [unclosed\n"),
        "not valid YAML: line",
    ),
    "duplicate key": (
        catalog(EDITED, EMBED, bad_model() + "    prompt_price: 2\n"),
        "not valid YAML: line 27, column 5: duplicate key 'prompt_price'",
    ),
    "image_tokens on a model that takes no images": (
        catalog(EDITED, EMBED, bad_model(image_tokens="576")),
        M2 + "image_tokens: Only a vision-language model (kind vlm or tag VLM) takes images.",
    ),
    "image_tokens of no tokens": (
        catalog(EDITED, EMBED, bad_model(kind="vlm", image_tokens="0")),
        M2 + "image_tokens is wrong: Give a whole number of tokens per image, or a mapping of",
    ),
    "unknown image_tokens field": (
        catalog(EDITED, EMBED, bad_model(kind="vlm", image_tokens="{tiles: 512}")),
        M2 + "image_tokens is wrong: Unknown image_tokens field(s) tiles; known fields are "
        "tile_size, tokens_per_tile, base_tokens, max_long_side, max_short_side, "
        "got {'tiles': 512}",
    ),
    "fractional tile size": (
        catalog(EDITED, EMBED, bad_model(kind="vlm", image_tokens="{tile_size: 1.5}")),
        M2 + "image_tokens is wrong: image_tokens.tile_size must be a whole number >= 1",
    ),
    "negative template_tokens": (
        catalog(EDITED, EMBED, bad_model(template_tokens="-3")),
        M2 + "template_tokens must be a whole number >= 0, got -3",
    ),
    "unknown tokenize": (
        catalog(
            EDITED,
            backends=BACKENDS + "  - name: gpu-1\n    base_url: http://g:1/v1\n"
            "    tokenize: ollama\n",
        ),
        "backends[1] (gpu-1): tokenize must be one of vllm, llama.cpp, got 'ollama'",
    ),
    "not a mapping": ("- anvil-small\n- anvil-embed\n", "the file must be a mapping"),
    "empty file": ("# nothing here\n", "the file must be a mapping with"),
}


@pytest.mark.parametrize(("text", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_it_refuses_a_bad_file_and_writes_nothing(tmp_path, text, message):
    load(write(tmp_path, GOOD))
    before = snapshot()
    with pytest.raises(CommandError) as error:
        load(write(tmp_path, text), "--deactivate-missing")
    assert message in str(error.value)
    assert str(error.value).startswith(str(tmp_path / "catalog.yaml"))
    assert snapshot() == before


def test_it_raises_an_application_error_from_the_service():
    with pytest.raises(CatalogFileError) as error:
        catalog_load(data=catalog_parse(text=catalog(SMALL, bad_model(kind="audio"))))
    assert isinstance(error.value, ApplicationError)
    assert (
        error.value.message == "models[1] (bad-model): kind must be one of chat, embedding,"
        " vlm, got 'audio'"
    )
    assert not CatalogModel.objects.exists() and not Backend.objects.exists()


def test_it_loads_how_images_the_template_and_the_backend_count(tmp_path):
    vision = bad_model(
        name="vision", kind="vlm", template_tokens="25",
        image_tokens="{tile_size: 336, tokens_per_tile: 144, base_tokens: 0}",
    )  # fmt: skip
    fixed = bad_model(name="qwen-vl", kind="chat", tags="[VLM]", image_tokens="1280")
    tokenized = BACKENDS.replace("    api_key_env", "    tokenize: vllm\n    api_key_env")
    load(write(tmp_path, catalog(SMALL, vision, fixed, backends=tokenized)))
    model = CatalogModel.objects.get(name="vision")
    assert model.image_tokens == {"tile_size": 336, "tokens_per_tile": 144, "base_tokens": 0}
    assert model.template_tokens == 25 and model.backend.tokenize == "vllm"
    assert CatalogModel.objects.get(name="qwen-vl").image_tokens == 1280
    small = CatalogModel.objects.get(name="anvil-small")
    assert (small.image_tokens, small.template_tokens, small.takes_images) == (None, 0, False)
    assert "models: 0 created, 0 updated, 3 unchanged" in load(
        write(tmp_path, catalog(SMALL, vision, fixed, backends=tokenized))
    )


def test_it_refuses_a_file_it_cannot_read(tmp_path):
    with pytest.raises(CommandError, match="cannot read the file"):
        load(tmp_path / "missing.yaml")


def test_it_loads_the_demo_catalog():
    output = load(Path(settings.BASE_DIR) / "demo" / "catalog.yaml")
    assert "backends: 1 created" in output and "models: 4 created" in output
    backend = Backend.objects.get()
    assert (backend.name, backend.base_url) == ("local", "http://127.0.0.1:8001/v1")
    rows = {
        m.name: (m.kind, m.prompt_price, m.completion_price, m.context_window, m.tags)
        for m in CatalogModel.objects.all()
    }
    assert rows == {
        "anvil-chat-small": ("chat", Decimal("0.5"), Decimal("1.5"), 8192, ["FC"]),
        "anvil-chat-large": ("chat", 2, 6, 32768, ["FC", "non-commercial"]),
        "anvil-embed": ("embedding", Decimal("0.1"), Decimal("0.1"), 512, ["EMB"]),
        "anvil-vision": ("vlm", 1, 3, 16384, ["VLM"]),
    }
    assert CatalogModel.objects.get(name="anvil-chat-large").max_concurrency == 2
