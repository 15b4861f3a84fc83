from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transports.app import OpenStore, store_opener
from tests.transports.brokers import CONNECTS, Connect


@pytest.fixture(params=sorted(CONNECTS))
def broker(request: pytest.FixtureRequest) -> Connect:
    """Each broker in turn: a test using this runs against every one."""
    return CONNECTS[request.param]()


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """The async store of each SQL backend in turn."""
    with store_opener(request.param, tmp_path) as opener:
        yield opener
