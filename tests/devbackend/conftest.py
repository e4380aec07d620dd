from __future__ import annotations

import openai
import pytest

from devbackend.testing import devbackend_running, devbackend_stats_reset


@pytest.fixture(scope="module")
def backend_url():
    """One development backend process per test module."""
    with devbackend_running() as (url, _process):
        yield url


@pytest.fixture
def backend(backend_url):
    devbackend_stats_reset(backend_url)
    return backend_url


@pytest.fixture
def client(backend) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{backend}/v1", api_key="unused", max_retries=0, timeout=5)
