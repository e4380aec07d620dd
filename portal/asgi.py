"""The ASGI entry point (uvicorn serves it).

Static files are answered by Django's ASGI static handler in front of the application, so no
synchronous middleware sits on the gateway's path. Behind a reverse proxy in production,
the proxy can serve STATIC_ROOT (``manage.py collectstatic``) itself.
"""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

application = ASGIStaticFilesHandler(get_asgi_application())
