from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.demo.services import demo_seed


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
        parser.add_argument(
            "--rotate", action="store_true", help="archive the demo keys and issue fresh ones"
        )

    def handle(self, *args, as_json=False, force=False, rotate=False, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates users with published passwords; it refuses to run with "
                "DEBUG off. Pass --force if you really mean it."
            )
        data = demo_seed(rotate=rotate).as_json()
        if as_json:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(
            f"Demo grant {data['grant']} (id {data['grant_id']}), team {data['team']}"
        )
        for role, user in data["users"].items():
            self.stdout.write(f"  {role}: {user['username']} / {user['password']}")
        for kind in ("api_key", "management_key"):
            secret = data[kind]
            shown = secret or (
                "(issued earlier and not shown again; for a new one: "
                "python manage.py seed_demo --rotate)"
            )
            self.stdout.write(f"  demo-user's {kind.replace('_', ' ')}: {shown}")
