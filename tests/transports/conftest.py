from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transports.app import OpenStore, store_opener
from tests.transports.brokers import Connect, nats_connect, rabbitmq_connect


@pytest.fixture(params=["nats", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Connect:
    """Each broker in turn: a test using this runs against both."""
    return nats_connect() if request.param == "nats" else rabbitmq_connect()


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """The async store of each SQL backend in turn."""
    with store_opener(request.param, tmp_path) as opener:
        yield opener
