"""HTTPS settings come from the environment, and ``manage.py check --deploy`` reports nothing
with the production settings README documents (its "HTTPS in production" block, read from the
README itself so the two can not drift apart)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import env

ROOT = Path(__file__).resolve().parents[3]


def documented_production_settings() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### HTTPS in production", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return dict(line.split("=", 1) for line in block.splitlines() if line.strip())


def deploy_check(**overrides: str) -> subprocess.CompletedProcess:
    environ = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "API_KEY_PEPPER": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "anvil.example.org",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={name: value for name, value in environ.items() if value},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_production_settings():
    production = documented_production_settings()
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER"} <= set(
        production
    )
    result = deploy_check(**production)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_them():
    """The check does report what is missing (so the clean run above means something)."""
    result = deploy_check()
    assert result.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" in result.stderr


def test_it_reads_the_proxy_s_https_header():
    read = env.env_proxy_ssl_header
    assert read("P", environ={"P": "X-Forwarded-Proto"}) == ("HTTP_X_FORWARDED_PROTO", "https")
    assert read("P", environ={"P": "X-Forwarded-Ssl=on"}) == ("HTTP_X_FORWARDED_SSL", "on")
    assert read("P", environ={"P": ""}) is None
    assert read("P", environ={}) is None
    for bad in ("X Forwarded", "=https", "X_Forwarded_Proto"):
        with pytest.raises(ImproperlyConfigured, match="P must be a header name"):
            read("P", environ={"P": bad})


def test_behind_the_proxy_plain_http_is_redirected_and_https_gets_hsts(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    plain = client.get("/accounts/login/")
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")
    secure = client.get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
