"""``python manage.py load_catalog FILE.yaml``: create or update backends and models from a file."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.catalog.services import CatalogFileError, catalog_load, catalog_parse


class Command(BaseCommand):
    help = (
        "Create or update catalog backends and models from a YAML file (see demo/catalog.yaml). "
        "Loading the same file twice changes nothing; a bad file changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="The catalog file, e.g. demo/catalog.yaml.")
        parser.add_argument(
            "--deactivate-missing",
            action="store_true",
            help="Set models the file does not name inactive (they are never deleted).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check the file and report; write nothing."
        )
        parser.add_argument(
            "--base-url",
            action="append",
            default=[],
            metavar="BACKEND=URL",
            help="Use URL as this backend's base_url instead of the file's (repeatable); "
            "`make run` points the demo backend at BACKEND_PORT this way.",
        )

    def handle(self, *args, file: Path, deactivate_missing: bool, dry_run: bool, **options):
        overrides = base_url_overrides(options["base_url"])
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"{file}: cannot read the file: {error}") from None
        try:
            data = with_base_urls(catalog_parse(text=text), overrides)
            result = catalog_load(
                data=data,
                deactivate_missing=deactivate_missing,
                dry_run=dry_run,
            )
        except CatalogFileError as error:
            raise CommandError(f"{file}: {error.message}") from None
        self.stdout.write(self.style.SUCCESS(f"{file}: {result.summary}"))


def base_url_overrides(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url:
            raise CommandError(f"--base-url {value!r}: write it BACKEND=URL")
        overrides[name] = url
    return overrides


def with_base_urls(data: dict, overrides: dict[str, str]) -> dict:
    """The parsed file with the overridden backends' base_url; a name the file does not have
    is an error (a typo would otherwise go unnoticed)."""
    backends = data.get("backends") if isinstance(data, dict) else None
    names = {b.get("name") for b in backends or [] if isinstance(b, dict)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise CommandError(f"--base-url: the file has no backend named {', '.join(unknown)}")
    for backend in backends or []:
        if isinstance(backend, dict) and backend.get("name") in overrides:
            backend["base_url"] = overrides[backend["name"]]
    return data
