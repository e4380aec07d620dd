"""Every portal page carries a Content-Security-Policy that runs no inline script, and the
templates give it none to refuse; the API docs page has its own, still without inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def directives(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_no_inline_script(policy: dict[str, list[str]]) -> None:
    assert policy["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy.get("script-src-attr", [])
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]


def test_the_sign_in_page_carries_the_policy(client):
    policy = directives(client.get(reverse("account_login")))
    assert_no_inline_script(policy)
    assert policy["style-src"] == ["'self'"]  # no style= attributes either
    assert policy["frame-ancestors"] == ["'none'"]


def test_every_signed_in_page_carries_it(client, world):
    client.force_login(world.bob)
    grant = world.grant.public_id
    urls = [
        reverse("catalog:models"), reverse("keys:list"), reverse("keys:create"),
        reverse("consumption:grant", args=[grant]), reverse("playground:page"),
        reverse("jobs:list"), reverse("statements:list"), reverse("consumption:mine"),
        reverse("management_keys:list"), "/no-such-page/",
    ]  # fmt: skip
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 404), url
        policy = directives(response)
        assert_no_inline_script(policy)
        assert policy["style-src"] == ["'self'"], url


def test_the_api_docs_have_their_own_policy_and_no_inline_script(client, world):
    client.force_login(world.bob)
    response = client.get(reverse("api-docs"))
    policy = directives(response)
    assert_no_inline_script(policy)
    assert policy["img-src"] == ["'self'", "data:"]  # Swagger UI's icons
    html = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all("src=" in attrs for attrs in scripts), scripts
    assert "https://" not in "".join(scripts)  # from our own server, never a CDN

    script = client.get(reverse("api-docs"), {"script": ""})
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()
    assert script["Cross-Origin-Resource-Policy"] == "same-origin"  # it holds the CSRF token


def test_no_template_has_inline_script_handlers_or_styles():
    found = []
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text(encoding="utf-8")
        for attrs in re.findall(r"<script\b([^>]*)>", text):
            if "src=" not in attrs and 'type="application/json"' not in attrs:
                found.append(f"{template}: inline <script{attrs}>")
        for handler in re.findall(r"\s(on[a-z]+)\s*=", text):
            found.append(f"{template}: {handler}= handler")
        if re.search(r"\sstyle\s*=", text) or "<style" in text:
            found.append(f"{template}: inline style")
    assert found == []


def test_the_second_factor_setup_page_may_show_its_qr_code(client):
    from apps.accounts.models import User

    User.objects.create_user("operator", "operator@example.org", "pw-0123456789", is_staff=True)
    client.post(reverse("account_login"), {"login": "operator", "password": "pw-0123456789"})
    response = client.get("/accounts/2fa/totp/activate/")
    assert response.status_code == 200
    policy = directives(response)
    assert_no_inline_script(policy)
    assert policy["img-src"] == ["'self'", "data:"]  # allauth draws the QR code as a data: image
    assert 'src="data:image/svg+xml' in response.content.decode()
