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

    def handle(self, *args, file: Path, deactivate_missing: bool, dry_run: bool, **options):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"{file}: cannot read the file: {error}") from None
        try:
            result = catalog_load(
                data=catalog_parse(text=text),
                deactivate_missing=deactivate_missing,
                dry_run=dry_run,
            )
        except CatalogFileError as error:
            raise CommandError(f"{file}: {error.message}") from None
        self.stdout.write(self.style.SUCCESS(f"{file}: {result.summary}"))
