from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import Server


@pytest.fixture(scope="session")
def _server() -> Iterator[Server]:
    server = Server().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server: Server) -> Server:
    _server.reset()
    return _server
