from __future__ import annotations

import pytest

from devbackend.testing import start_devbackend, stop_devbackend


@pytest.fixture
def devbackend(world):
    """The development backend, serving the test world's models."""
    backend = start_devbackend()
    world.backend.base_url = f"{backend.url}/v1"
    world.backend.save()
    yield backend.url
    stop_devbackend(backend.process)
