"""Writes to the catalog: loading the operator's catalog file (``manage.py load_catalog``).

The file is the source of truth for what it names. Loading checks the whole file first, then
writes everything in one transaction, so a bad file changes nothing. Only rows whose values
differ are saved, which makes a second load of the same file a no-op.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.catalog.models import (
    Backend,
    CatalogModel,
    Kind,
    Tag,
    Tokenize,
    validate_backend_url,
    validate_image_tokens,
)
from apps.core.exceptions import ApplicationError

PRICE_STEP = Decimal("0.000001")  # CatalogModel prices keep 6 decimal places
PRICE_LIMIT = Decimal(10) ** 12  # ... and 18 digits in all
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+$")  # Django's validate_slug


class CatalogFileError(ApplicationError):
    """The catalog file is unreadable or wrong; the message names the entry and the field."""


class _Invalid(Exception):
    """A field's value is wrong; the message completes '<field> ...'."""


@dataclass(frozen=True)
class CatalogLoadResult:
    backends_created: int = 0
    backends_updated: int = 0
    backends_unchanged: int = 0
    models_created: int = 0
    models_updated: int = 0
    models_unchanged: int = 0
    models_deactivated: int = 0
    dry_run: bool = False

    @property
    def summary(self) -> str:
        line = (
            f"backends: {self.backends_created} created, {self.backends_updated} updated, "
            f"{self.backends_unchanged} unchanged; models: {self.models_created} created, "
            f"{self.models_updated} updated, {self.models_unchanged} unchanged, "
            f"{self.models_deactivated} deactivated"
        )
        return f"Dry run, nothing written: {line}" if self.dry_run else line


# --- YAML --------------------------------------------------------------------------------


class _CatalogLoader(yaml.SafeLoader):
    """SafeLoader that reads floats as exact Decimals and refuses duplicate keys."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = loader.construct_scalar(node).replace("_", "").lower()
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    try:
        return Decimal(special.get(text, text))
    except InvalidOperation:
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported number {node.value!r}", node.start_mark
        ) from None


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_CatalogLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_CatalogLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def catalog_parse(*, text: str) -> dict:
    """The catalog file's YAML as a dict, with every non-integer number as an exact Decimal."""
    try:
        data = yaml.load(text, Loader=_CatalogLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise CatalogFileError(f"not valid YAML: {where}{error.problem or error}") from None
    except yaml.YAMLError as error:
        raise CatalogFileError(f"not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise CatalogFileError(
            f"the file must be a mapping with 'backends' and 'models', got {_kind_of(data)}"
        )
    return data


# --- checking one field ---------------------------------------------------------------------


def _kind_of(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


def _show(value: Any) -> str:
    return str(value) if isinstance(value, Decimal) else repr(value)


def _slug(value: Any) -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise _Invalid("must be a slug: letters, digits, '-' and '_'")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("must be non-empty text (quote it if it looks like a number)")
    return value


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not ENV_NAME_RE.match(value):
        raise _Invalid("must be an environment variable name like LOCAL_BACKEND_KEY")
    return value


def _url(value: Any) -> str:
    try:
        validate_backend_url(value)
    except ValidationError:
        raise _Invalid(
            "must be an http:// or https:// URL like http://gpu-node-1:8000/v1"
        ) from None
    return value


def _price(value: Any) -> Decimal:
    number = isinstance(value, int | Decimal) and not isinstance(value, bool)
    if not number or not Decimal(value).is_finite() or value < 0:
        raise _Invalid("must be a number >= 0")
    if value >= PRICE_LIMIT or Decimal(value) != Decimal(value).quantize(PRICE_STEP):
        raise _Invalid(f"must be below {PRICE_LIMIT} with at most 6 decimal places")
    return Decimal(value).quantize(PRICE_STEP)


def _whole(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise _Invalid(f"must be a whole number >= {minimum}")
        return value

    return check


def _kind(value: Any) -> str:
    if value not in Kind.values:
        raise _Invalid(f"must be one of {', '.join(Kind.values)}")
    return value


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or any(tag not in Tag.values for tag in value):
        raise _Invalid(f"must be a list of tags from {', '.join(Tag.values)}")
    if len(set(value)) != len(value):
        raise _Invalid("must not repeat a tag")
    return value


def _choice(values: list[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in values:
            raise _Invalid(f"must be one of {', '.join(values)}")
        return value

    return check


def _tokenize(value: Any) -> str:
    if value not in Tokenize.values or not value:
        raise _Invalid(f"must be one of {', '.join(v for v in Tokenize.values if v)}")
    return value


def _image_tokens(value: Any) -> int | dict:
    try:
        validate_image_tokens(value)
    except ValidationError as error:
        message = " ".join(error.messages).rstrip(".")
        raise _Invalid(f"is wrong: {message}") from None
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("must be true or false")
    return value


REQUIRED = object()  # marks a field without a default
_model_default = CatalogModel._meta.get_field

BACKEND_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "name": (_slug, REQUIRED),
    "base_url": (_url, REQUIRED),
    "api_key_env": (_env_name, ""),
    "responses": (_choice(Backend.Responses.values), Backend.Responses.TRANSLATED),
    "tokenize": (_tokenize, Tokenize.NONE),
}
MODEL_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "name": (_text, REQUIRED),
    "backend": (_text, REQUIRED),
    "upstream_model": (_text, None),  # None: the model's name
    "kind": (_kind, REQUIRED),
    "prompt_price": (_price, REQUIRED),
    "completion_price": (_price, None),  # None: the prompt price
    "context_window": (_whole(1), REQUIRED),
    "max_concurrency": (_whole(1), _model_default("max_concurrency").default),
    "queue_size": (_whole(0), _model_default("queue_size").default),
    "tags": (_tags, []),
    "image_tokens": (_image_tokens, None),  # None: OpenAI's tiles rule (vision models)
    "template_tokens": (_whole(0), 0),
    "active": (_boolean, True),
}


# --- checking the whole file ----------------------------------------------------------------


def _where(section: str, index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"{section}[{index}] ({name})" if isinstance(name, str) else f"{section}[{index}]"


def _check_entry(where: str, entry: Any, fields: dict) -> dict:
    if not isinstance(entry, dict):
        raise CatalogFileError(f"{where} must be a mapping of fields, got {_kind_of(entry)}")
    unknown = sorted(str(key) for key in entry if key not in fields)
    if unknown:
        raise CatalogFileError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known fields are {', '.join(fields)}"
        )
    values = {}
    for field, (check, default) in fields.items():
        value = entry.get(field)
        if value is None and default is REQUIRED:
            raise CatalogFileError(f"{where}: {field} is required")
        if value is None:
            values[field] = list(default) if isinstance(default, list) else default
            continue
        try:
            values[field] = check(value)
        except _Invalid as problem:
            raise CatalogFileError(f"{where}: {field} {problem}, got {_show(value)}") from None
    return values


def _check_section(data: dict, section: str, fields: dict) -> list[tuple[str, dict]]:
    entries = data.get(section) or []
    if not isinstance(entries, list):
        raise CatalogFileError(f"{section} must be a list of entries, got {_kind_of(entries)}")
    checked = []
    first: dict[str, str] = {}  # name -> where it first appears
    for index, entry in enumerate(entries):
        where = _where(section, index, entry)
        values = _check_entry(where, entry, fields)
        if values["name"] in first:
            raise CatalogFileError(f"{where}: name is already used by {first[values['name']]}")
        first[values["name"]] = where
        checked.append((where, values))
    return checked


def _check_file(data: Any) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    if not isinstance(data, dict):
        raise CatalogFileError(f"the file must be a mapping, got {_kind_of(data)}")
    unknown = sorted(str(key) for key in data if key not in ("backends", "models"))
    if unknown:
        raise CatalogFileError(
            f"unknown top-level key(s) {', '.join(unknown)}; known keys are backends, models"
        )
    if "models" not in data:
        raise CatalogFileError("models is required (a list of models; it may be empty)")
    backends = _check_section(data, "backends", BACKEND_FIELDS)
    models = _check_section(data, "models", MODEL_FIELDS)
    for _, values in models:
        values["upstream_model"] = values["upstream_model"] or values["name"]
        if values["completion_price"] is None:
            values["completion_price"] = values["prompt_price"]
    return backends, models


# --- loading ---------------------------------------------------------------------------------


def _full_clean(instance: Backend | CatalogModel, where: str, exclude: list[str]) -> None:
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as error:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
        raise CatalogFileError(f"{where}: {problems}") from None


def _stage(rows: dict, model: type, values: dict) -> tuple[Any, str]:
    """Put the file's values on the row of that name (a new one if none), without saving."""
    row = rows.setdefault(values["name"], model())
    state = "created" if row._state.adding else "unchanged"
    for field, value in values.items():
        if getattr(row, field) != value:
            setattr(row, field, value)
            state = "updated" if state == "unchanged" else state
    return row, state


def _stage_model(rows: dict, backends: dict, where: str, values: dict) -> tuple[Any, str]:
    values = dict(values)
    backend_name = values.pop("backend")
    backend = backends.get(backend_name)
    if backend is None:
        raise CatalogFileError(
            f"{where}: backend {backend_name!r} is defined neither under backends"
            " nor in the database"
        )
    row, state = _stage(rows, CatalogModel, values)
    if state == "unchanged" and row.backend.name != backend.name:
        state = "updated"
    row.backend = backend
    _full_clean(row, where, exclude=["backend"])  # a new backend has no id until it is saved
    return row, state


def _count(staged: list[tuple[Any, str]], state: str) -> int:
    return sum(1 for _, row_state in staged if row_state == state)


@transaction.atomic
def catalog_load(
    *, data: dict, deactivate_missing: bool = False, dry_run: bool = False
) -> CatalogLoadResult:
    """Create or update the backends and models of a parsed catalog file; see module docstring.

    Models the file does not name are left alone, or set inactive with ``deactivate_missing``
    (never deleted). ``dry_run`` checks everything and counts the changes but writes nothing.
    """
    backend_entries, model_entries = _check_file(data)
    backends = {row.name: row for row in Backend.objects.all()}
    staged_backends = []
    for where, values in backend_entries:
        staged_backends.append(_stage(backends, Backend, values))
        _full_clean(staged_backends[-1][0], where, exclude=[])
    models = {row.name: row for row in CatalogModel.objects.select_related("backend")}
    staged_models = [_stage_model(models, backends, *entry) for entry in model_entries]
    missing = CatalogModel.objects.none()
    if deactivate_missing:
        named = [values["name"] for _, values in model_entries]
        missing = CatalogModel.objects.filter(active=True).exclude(name__in=named)
    if dry_run:
        deactivated = missing.count()
    else:
        for row, state in staged_backends + staged_models:
            if state != "unchanged":
                row.save()
        deactivated = missing.update(active=False)
    return CatalogLoadResult(
        backends_created=_count(staged_backends, "created"),
        backends_updated=_count(staged_backends, "updated"),
        backends_unchanged=_count(staged_backends, "unchanged"),
        models_created=_count(staged_models, "created"),
        models_updated=_count(staged_models, "updated"),
        models_unchanged=_count(staged_models, "unchanged"),
        models_deactivated=deactivated,
        dry_run=dry_run,
    )
