"""Settings come from the environment; a bad value stops the process with a message naming
the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import env

ROOT = Path(__file__).resolve().parents[3]


def test_it_parses_booleans():
    assert env.env_bool("X", False, environ={"X": "yes"}) is True
    assert env.env_bool("X", True, environ={"X": "0"}) is False
    assert env.env_bool("X", True, environ={}) is True
    with pytest.raises(ImproperlyConfigured, match="X must be true or false"):
        env.env_bool("X", False, environ={"X": "maybe"})


def test_it_parses_lists():
    assert env.env_list("H", ["a"], environ={"H": "a.org, b.org"}) == ["a.org", "b.org"]
    with pytest.raises(ImproperlyConfigured, match="H must list"):
        env.env_list("H", ["a"], environ={"H": " , "})


def test_it_reads_choices_and_pairs():
    assert env.env_choice("A", "RS256", ["RS256", "HS256"], environ={}) == "RS256"
    with pytest.raises(ImproperlyConfigured, match="A must be one of RS256, HS256"):
        env.env_choice("A", "RS256", ["RS256", "HS256"], environ={"A": "none"})
    pairs = env.env_pairs("M", environ={"M": "staff=academic, company = commercial,"})
    assert pairs == {"staff": "academic", "company": "commercial"}
    assert env.env_pairs("M", environ={}) == {}
    with pytest.raises(ImproperlyConfigured, match="M must be name=value pairs"):
        env.env_pairs("M", environ={"M": "staff"})


def test_it_checks_the_time_zone():
    assert env.env_time_zone("TZ", "Europe/Warsaw", environ={}) == "Europe/Warsaw"
    with pytest.raises(ImproperlyConfigured, match="TIME_ZONE must be an IANA time zone"):
        env.env_time_zone("TIME_ZONE", "UTC", environ={"TIME_ZONE": "Mars/Olympus"})


def test_it_reads_database_urls():
    pg = env.env_database("D", "", environ={"D": "postgresql://u@127.0.0.1:5432/anvil"})
    assert pg["ENGINE"] == "django.db.backends.postgresql" and pg["NAME"] == "anvil"
    lite = env.env_database("D", "sqlite:////tmp/x.sqlite3", environ={})
    assert lite["ENGINE"] == "django.db.backends.sqlite3"
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL must be a postgresql"):
        env.env_database("DATABASE_URL", "", environ={"DATABASE_URL": "mysql://x/y"})


def test_it_reads_redis_urls():
    assert env.env_redis_url("R", environ={}) is None
    assert env.env_redis_url("R", environ={"R": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL must be a redis://"):
        env.env_redis_url("REDIS_URL", environ={"REDIS_URL": "http://127.0.0.1"})


def test_it_requires_secrets_when_debug_is_off():
    assert env.env_secret("S", debug=True, dev_default="d", environ={}) == "d"
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set when DEBUG is off"):
        env.env_secret("SECRET_KEY", debug=False, dev_default="d", environ={})
    with pytest.raises(ImproperlyConfigured, match="API_KEY_PEPPER must be at least 32"):
        env.env_secret(
            "API_KEY_PEPPER", debug=False, dev_default="d", environ={"API_KEY_PEPPER": "short"}
        )


def run_check(**overrides) -> subprocess.CompletedProcess:
    environ = {"PATH": os.environ["PATH"], "DEBUG": "true", **overrides}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"DEBUG": "perhaps"}, "DEBUG"),
        ({"TIME_ZONE": "Nowhere/Land"}, "TIME_ZONE"),
        ({"DATABASE_URL": "oracle://db/anvil"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"DEBUG": "false"}, "SECRET_KEY"),
        ({"DEBUG": "false", "SECRET_KEY": "k" * 40}, "API_KEY_PEPPER"),
        ({"ALLOWED_HOSTS": ","}, "ALLOWED_HOSTS"),
        ({"OIDC_RP_SIGN_ALGO": "none"}, "OIDC_RP_SIGN_ALGO"),
        ({"OIDC_RP_CLIENT_ID": "anvil"}, "OIDC_OP_DISCOVERY_URL"),
        (
            {"OIDC_RP_CLIENT_ID": "anvil", "OIDC_OP_DISCOVERY_URL": "https://idp.example.org"}
            | {"OIDC_RP_SIGN_ALGO": "HS256"},
            "OIDC_RP_CLIENT_SECRET",
        ),
        ({"OIDC_AFFILIATION_MAP": "staff"}, "OIDC_AFFILIATION_MAP"),
        ({"SECURE_PROXY_SSL_HEADER": "X Forwarded Proto"}, "SECURE_PROXY_SSL_HEADER"),
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES"),
    ],
)
def test_it_stops_at_start_naming_the_bad_variable(overrides, variable):
    result = run_check(**overrides)
    assert result.returncode != 0
    assert variable in result.stderr


def test_it_starts_with_the_embedded_defaults():
    result = run_check()
    assert result.returncode == 0, result.stderr
