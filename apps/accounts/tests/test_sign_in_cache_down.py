"""Sign-in with the cache's Redis down (django-allauth counts failed sign-ins there) answers a
clear 503 page, never a 500; with Redis back, the same sign-in works."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings

from tests.servers import free_port
from tests.world import PASSWORD

pytestmark = pytest.mark.django_db

if settings.CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
    pytest.skip("needs REDIS_URL: the cache in Redis", allow_module_level=True)


def sign_in(client):
    return client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})


def test_sign_in_with_redis_down_is_a_clear_503_and_works_once_it_is_back(world, client, settings):
    real = copy.deepcopy(settings.CACHES)
    down = copy.deepcopy(real)
    down["default"]["LOCATION"] = f"redis://127.0.0.1:{free_port()}/3"
    settings.CACHES = down
    client.raise_request_exception = False
    assert client.get("/accounts/login/").status_code == 200  # the form itself needs no cache
    answer = sign_in(client)
    assert answer.status_code == 503
    page = answer.content.decode()
    assert "Temporarily unavailable" in page
    assert "cache can not be reached" in page
    assert "_auth_user_id" not in client.session

    settings.CACHES = real
    answer = sign_in(client)
    assert answer.status_code == 302
    assert client.session["_auth_user_id"] == str(world.alice.pk)
