"""lib's tests use no Django: real loopback servers, the test Redis (``REDIS_URL``) and the
development backend as its own process."""

from __future__ import annotations

import pytest

from devbackend.testing import start_devbackend, stop_devbackend


@pytest.fixture(scope="session")
def devbackend():
    backend = start_devbackend()
    yield backend.url
    stop_devbackend(backend.process)
