"""E-mail goes to the console until EMAIL_HOST names an SMTP server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SHOW = (
    "from django.conf import settings as s; "
    "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL)"
)


def email_settings(**overrides) -> str:
    environ = {"PATH": os.environ["PATH"], "DEBUG": "true", **overrides}
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "shell", "-c", SHOW],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def test_it_prints_mail_to_the_console_by_default():
    assert email_settings().startswith("django.core.mail.backends.console.EmailBackend")


def test_it_sends_through_smtp_when_a_host_is_set():
    shown = email_settings(
        EMAIL_HOST="127.0.0.1", EMAIL_PORT="2525", EMAIL_USE_TLS="false",
        DEFAULT_FROM_EMAIL="anvil@example.org",
    )  # fmt: skip
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    assert shown == f"{smtp} 127.0.0.1 2525 False anvil@example.org"
