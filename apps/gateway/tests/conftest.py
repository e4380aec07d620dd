"""Gateway tests run everything for real: Anvil under uvicorn on loopback, the development
backend as its own process, PostgreSQL and Redis; clients use the official ``openai`` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import openai
import pytest

from apps.catalog.models import CatalogModel, Kind
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from devbackend.testing import start_devbackend, stop_devbackend
from tests.world import World


@pytest.fixture(scope="session")
def devbackend():
    backend = start_devbackend()
    yield backend.url
    stop_devbackend(backend.process)


@dataclass
class Gateway:
    world: World
    url: str  # Anvil's base URL for clients: .../api/v1
    backend_url: str
    key: ApiKey
    secret: str

    def client(self, secret: str | None = None, **options) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url, api_key=secret or self.secret, max_retries=0, **options
        )

    def add_model(
        self, name: str, *, upstream: str | None = None, allow: bool = True, **fields
    ) -> CatalogModel:
        defaults = {
            "kind": Kind.CHAT,
            "prompt_price": Decimal("0.5"),
            "completion_price": Decimal("1.5"),
            "context_window": 8192,
        }
        model = CatalogModel.objects.create(
            name=name,
            backend=self.world.backend,
            upstream_model=upstream or name,
            **{**defaults, **fields},
        )
        if allow:
            self.world.grant.allowed_models.add(model)
        return model


@pytest.fixture
def gateway(world, anvil_server, devbackend) -> Gateway:
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    world.grant.allowed_models.add(world.embed_model)
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="gateway-tests")
    return Gateway(
        world=world,
        url=f"{anvil_server.url}/api/v1",
        backend_url=devbackend,
        key=key,
        secret=secret,
    )


@pytest.fixture
def holds(monkeypatch) -> list:
    """The key ids of the holds the admissions started placing, in order; the server runs in
    this process."""
    from apps.usage import ledger

    placed = []
    real = ledger.aplace

    async def place(plan):
        placed.append(plan.api_key_id)
        return await real(plan)

    monkeypatch.setattr(ledger, "aplace", place)
    return placed
