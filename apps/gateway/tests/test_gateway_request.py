"""The gateway's request reads what the views use from the ASGI scope, as Django's request
would: the same header names and values, query string and Host check."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest

from apps.gateway.request import GatewayRequest


def scope(headers=(), query_string=b"", **fields) -> dict:
    return {
        "type": "http",
        "method": "post",
        "path": "/api/v1/chat/completions",
        "root_path": "",
        "query_string": query_string,
        "headers": list(headers),
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        **fields,
    }


HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"authorization", b"Bearer anvil-abc"),
    (b"x-tag", b"one"),
    (b"x-tag", b"two"),
    (b"x_tag", b"spoofed"),  # Django drops names with '_': they could pose as x-tag
    (b"content-length", b"11"),
    (b"content-type", b"application/json"),
]


def test_it_has_the_headers_django_would_give_the_views():
    request = GatewayRequest(scope(HEADERS), b"")
    django = ASGIRequest(scope(HEADERS), io.BytesIO())
    assert dict(request.headers) == dict(django.headers)
    assert request.headers["AUTHORIZATION"] == "Bearer anvil-abc"
    assert request.headers.get("authorization") == "Bearer anvil-abc"
    assert request.headers["x-tag"] == "one,two"
    assert request.headers.get("x-missing") is None
    assert "Content-Length" in request.headers


def test_it_has_the_method_path_and_query_string():
    request = GatewayRequest(scope(query_string=b"model=chat-small&x=1"), b"")
    assert request.method == "POST"
    assert request.path_info == "/api/v1/chat/completions"
    assert request.GET.get("model") == "chat-small"
    assert GatewayRequest(scope(), b"").GET.get("model") is None


def test_it_strips_the_script_prefix_from_path_info():
    request = GatewayRequest(scope(path="/anvil/api/health", root_path="/anvil"), b"")
    assert request.path == "/anvil/api/health"
    assert request.path_info == "/api/health"


def test_it_refuses_a_query_string_that_is_not_utf8_as_django_does():
    with pytest.raises(UnicodeDecodeError):
        GatewayRequest(scope(query_string=b"model=\xff"), b"")
    with pytest.raises(UnicodeDecodeError):
        ASGIRequest(scope(query_string=b"model=\xff"), io.BytesIO())


def test_it_reads_the_body_as_a_stream():
    request = GatewayRequest(scope(), b'{"model":1}')
    assert request.read(4) == b'{"mo'
    assert request.read(100) == b'del":1}'
    assert request.read(100) == b""


def test_it_checks_the_host_against_allowed_hosts(settings):
    settings.ALLOWED_HOSTS = ["anvil.example.org"]
    allowed = GatewayRequest(scope([(b"host", b"anvil.example.org:443")]), b"")
    assert allowed.get_host() == "anvil.example.org:443"
    refused = GatewayRequest(scope([(b"host", b"evil.example")]), b"")
    with pytest.raises(DisallowedHost, match=r"evil\.example"):
        refused.get_host()


def test_a_host_accepted_once_is_refused_once_allowed_hosts_drops_it(settings):
    """The gateway remembers the hosts it accepted; an operator's new ALLOWED_HOSTS (or DEBUG)
    still decides the next request."""
    settings.ALLOWED_HOSTS = ["anvil.example.org", "old.example.org"]
    headers = [(b"host", b"old.example.org")]
    assert GatewayRequest(scope(headers), b"").get_host() == "old.example.org"
    settings.ALLOWED_HOSTS = ["anvil.example.org"]
    with pytest.raises(DisallowedHost, match=r"old\.example\.org"):
        GatewayRequest(scope(headers), b"").get_host()
    settings.ALLOWED_HOSTS, settings.DEBUG = [], True  # DEBUG's localhost variants only
    with pytest.raises(DisallowedHost):
        GatewayRequest(scope(headers), b"").get_host()


def test_it_takes_the_forwarded_host_only_when_told_to(settings):
    settings.ALLOWED_HOSTS = ["anvil.example.org"]
    headers = [(b"host", b"anvil.example.org"), (b"x-forwarded-host", b"evil.example")]
    assert GatewayRequest(scope(headers), b"").get_host() == "anvil.example.org"
    settings.USE_X_FORWARDED_HOST = True
    with pytest.raises(DisallowedHost):
        GatewayRequest(scope(headers), b"").get_host()


def test_it_uses_the_server_address_without_a_host_header(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    request = GatewayRequest(scope(), b"")
    assert request.get_host() == "127.0.0.1:8000"
    assert request.get_host() == ASGIRequest(scope(), io.BytesIO()).get_host()


def test_it_gives_django_s_request_for_django_s_own_code():
    request = GatewayRequest(scope(HEADERS, query_string=b"a=1"), b"{}")
    django = request.django_request()
    assert django is request.django_request()
    assert django.META["HTTP_AUTHORIZATION"] == "Bearer anvil-abc"
    assert django.GET["a"] == "1"
    assert django.body == b"{}"
