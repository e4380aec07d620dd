from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.services import demo_seed


class Command(BaseCommand):
    help = (
        "Create the demo team, users and grant (idempotent). With --json, print exactly one "
        "JSON object on stdout and nothing else."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print one JSON object"
        )
        parser.add_argument("--force", action="store_true", help="run even with DEBUG off")

    def handle(self, *args, as_json: bool = False, force: bool = False, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates users with published passwords; it refuses to run with "
                "DEBUG off. Pass --force if you really mean it."
            )
        data = demo_seed().as_json()
        if as_json:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(
            f"Demo grant {data['grant']} (id {data['grant_id']}), team {data['team']}"
        )
        for role, user in data["users"].items():
            self.stdout.write(f"  {role}: {user['username']} / {user['password']}")
