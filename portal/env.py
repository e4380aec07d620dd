"""Reading settings from the environment.

Every reader names the variable in its error, so a bad value stops the process at start with
a message an operator can act on.
"""

from __future__ import annotations

import ipaddress
import os
import zoneinfo
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, environ=os.environ) -> str | None:
    return environ.get(name, default)


def env_bool(name: str, default: bool, *, environ=os.environ) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), not {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0, environ=os.environ) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_port(name: str, default: int, *, environ=os.environ) -> int:
    """A TCP port, or 0 for none."""
    value = env_int(name, default, environ=environ)
    if value > 65535:
        raise ImproperlyConfigured(f"{name} must be a port number (1-65535) or 0, not {value}")
    return value


def env_decimal(name: str, default: Decimal, *, environ=os.environ) -> Decimal:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, not {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name} must be a finite number >= 0, not {raw!r}")
    return value


def env_list(name: str, default: list[str], *, environ=os.environ) -> list[str]:
    raw = environ.get(name)
    if raw is None:
        return default
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(f"{name} must list at least one value, separated by commas")
    return items


def env_proxy_ssl_header(name: str, *, environ=os.environ) -> tuple[str, str] | None:
    """``X-Forwarded-Proto`` (its value ``https``) or ``Name=value`` → Django's
    SECURE_PROXY_SSL_HEADER, ``("HTTP_X_FORWARDED_PROTO", "https")``; unset or empty: None."""
    raw = (environ.get(name) or "").strip()
    if not raw:
        return None
    header, _, value = raw.partition("=")
    header, value = header.strip(), value.strip() or "https"
    if not header or not all(c.isalnum() or c == "-" for c in header) or not value.isprintable():
        raise ImproperlyConfigured(
            f"{name} must be a header name such as X-Forwarded-Proto, or Name=value, not {raw!r}"
        )
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_choice(name: str, default: str, choices: list[str], *, environ=os.environ) -> str:
    value = environ.get(name, "").strip() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_pairs(name: str, *, environ=os.environ) -> dict[str, str]:
    """``a=x, b=y`` → ``{"a": "x", "b": "y"}``; unset or empty → ``{}``."""
    raw = environ.get(name, "")
    pairs = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key, sep, value = (side.strip() for side in item.partition("="))
        if not (sep and key and value):
            raise ImproperlyConfigured(f"{name} must be name=value pairs, not {item!r}")
        pairs[key] = value
    return pairs


def env_networks(name: str, *, environ=os.environ) -> tuple | None:
    """``10.0.0.0/8, 192.0.2.7, ::1`` → the IP networks (an address alone is a network of one);
    unset or empty: None."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be IP addresses or networks such as 10.0.0.0/8, not {item!r}"
            ) from None
    return tuple(networks)


def env_metrics_dir(name: str, *, environ=os.environ) -> str:
    """prometheus_client's multiprocess directory, which it reads from the environment itself
    (every process of a host writes its own files there and a scrape adds them up): required,
    created when missing, writable."""
    path = environ.get(name, "").strip()
    if not path:
        raise ImproperlyConfigured(
            f"METRICS_ENABLED needs {name}: a directory the server's processes share, emptied "
            "before the server starts (e.g. a tmpfs)"
        )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"{name} {path!r} can not be made: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(f"{name} {path!r} is not a writable directory")
    return path


def env_time_zone(name: str, default: str, *, environ=os.environ) -> str:
    value = environ.get(name, default).strip()
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name} must be an IANA time zone such as Europe/Warsaw, not {value!r}"
        ) from None
    return value


def env_database(name: str, default: str, *, environ=os.environ) -> dict:
    import dj_database_url

    url = environ.get(name, default)
    if not url.startswith(("postgres://", "postgresql://", "sqlite://")):
        raise ImproperlyConfigured(
            f"{name} must be a postgresql:// or sqlite:// URL, not {url.split(':', 1)[0]!r}"
        )
    try:
        config = dj_database_url.parse(url, conn_max_age=0)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if config["ENGINE"].endswith("postgresql") and not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgresql://host/anvil")
    return config


def env_redis_url(name: str, *, environ=os.environ) -> str | None:
    url = environ.get(name, "").strip()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"{name} must be a redis:// URL, not {url!r}")
    return url


def env_token(name: str, *, minimum_length: int = 16, environ=os.environ) -> str:
    """A shared secret that may be left unset (empty); set, at least ``minimum_length`` long."""
    value = environ.get(name, "").strip()
    if value and len(value) < minimum_length:
        raise ImproperlyConfigured(f"{name} must be at least {minimum_length} characters long")
    return value


def env_secret(name: str, *, debug: bool, dev_default: str, environ=os.environ) -> str:
    value = environ.get(name, "")
    if value:
        if len(value) < 32:
            raise ImproperlyConfigured(f"{name} must be at least 32 characters long")
        return value
    if debug:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (a long random string)")


def check_oidc_settings(
    *,
    discovery_url: str,
    issuer: str,
    authorization: str,
    token: str,
    jwks: str,
    algorithm: str,
    secret: str,
    affiliation_map: dict[str, str],
) -> None:
    """Stop at start when OpenID Connect is switched on but can not work: no way to find the
    provider's endpoints and issuer, no key to check its signatures with, or an affiliation
    mapped to something that is not one."""
    if not discovery_url:
        needed = {
            "OIDC_OP_ISSUER": issuer,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": authorization,
            "OIDC_OP_TOKEN_ENDPOINT": token,
        }
        if algorithm != "HS256":
            needed["OIDC_OP_JWKS_ENDPOINT"] = jwks
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise ImproperlyConfigured(
                f"OIDC_RP_CLIENT_ID is set: set OIDC_OP_DISCOVERY_URL, or {', '.join(missing)}"
            )
    if algorithm == "HS256" and not secret:
        raise ImproperlyConfigured("OIDC_RP_SIGN_ALGO HS256 needs OIDC_RP_CLIENT_SECRET")
    wrong = {value for value in affiliation_map.values()} - {"academic", "commercial"}
    if wrong:
        raise ImproperlyConfigured(
            f"OIDC_AFFILIATION_MAP maps to academic or commercial, not {', '.join(sorted(wrong))}"
        )
