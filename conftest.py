from __future__ import annotations

import pytest

from apps.core.testing import World, make_world

pytest_plugins = ["tests.servers", "tests.browser"]


@pytest.fixture
def world(db) -> World:
    return make_world()
