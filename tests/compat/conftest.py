"""The compatibility suite: OpenAI clients that users pick, used unchanged (only the base URL and
the key are Anvil's) against a live Anvil under uvicorn on loopback with the development backend
behind it, PostgreSQL and Redis. One module per client; each test asserts what the client gave
back: the text the development backend answered, the tool call, the vectors, the usage, the
exception.

Each module shares one Anvil and one world (``anvil``, module-scoped, so the suite stays within
seconds, not a server start and a database flush per test), and when its last test is over the
counters must equal the ledger. Its tests carry ``pytest.mark.django_db`` so the test database
exists; they read it but never write it (a write in the test's own transaction is one the server
does not see): models and keys a module needs are made in its fixture. Nothing may reach past
loopback: proxies point at a closed loopback port for every address but loopback's, and litellm
runs offline.
"""

from __future__ import annotations

import os

import pytest

from tests.compat.offline import offline_env

# litellm reads these when it is imported: its model prices from the copy it ships, and no
# catalog, tokenizer or blog fetched from the internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def compat_devbackend():
    from devbackend.testing import start_devbackend, stop_devbackend

    backend = start_devbackend()
    yield backend.url
    stop_devbackend(backend.process)


def _world_on(devbackend_url: str):
    """The shared test world, its backend at ``devbackend_url``, and Bob's key on Alice's grant,
    which may use ``chat-small`` and ``embed-small``."""
    from django.test import override_settings

    from apps.keys.services import api_key_create
    from tests.world import make_world

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        world = make_world()
    world.backend.base_url = f"{devbackend_url}/v1"
    world.backend.save()
    world.grant.allowed_models.add(world.embed_model)
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="compat")
    return world, key, secret


@pytest.fixture(scope="module")
def anvil(django_db_setup, django_db_blocker, compat_devbackend):
    """Anvil under uvicorn with the shared world (``Gateway`` of the gateway's tests: ``url``,
    ``secret``, ``client()``). After the module: every hold settled, the counters equal to the
    ledger, and the database emptied as a transactional test leaves it."""
    from django.core.management import call_command

    from apps.gateway.tests.conftest import Gateway
    from apps.usage.reconcile import counters_reconcile
    from portal.asgi import application
    from tests.servers import drop_server_connections, start_uvicorn
    from tests.world import wait_for_settlements

    with pytest.MonkeyPatch.context() as patch, django_db_blocker.unblock():
        for name, value in offline_env().items():
            patch.setenv(name, value)
        try:
            world, key, secret = _world_on(compat_devbackend)
            server = start_uvicorn(application)
            try:
                url = f"{server.url}/api/v1"
                yield Gateway(world, url, compat_devbackend, key, secret)
                wait_for_settlements()
                assert counters_reconcile() == [], "the counters differ from the ledger"
            finally:
                server.stop()
                drop_server_connections()
        finally:
            call_command("flush", verbosity=0, interactive=False)
