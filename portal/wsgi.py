"""The WSGI entry point: `manage.py runserver` serves it (uvicorn serves portal/asgi.py)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

application = get_wsgi_application()

from apps.accounts.provider import read_at_start  # noqa: E402 (after setup)

read_at_start()  # the identity provider's discovery document, before the first sign-in
