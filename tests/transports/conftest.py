import pytest

from tests.transports.brokers import Connect, nats_connect, rabbitmq_connect


@pytest.fixture(params=["nats", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Connect:
    """Each broker in turn: a test using this runs against both."""
    return nats_connect() if request.param == "nats" else rabbitmq_connect()
