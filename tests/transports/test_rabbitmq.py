"""RabbitMQ with quorum queues: the contract holds, and the groups' queues are quorum queues."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.transports import test_contract
from tests.transports.brokers import RABBITMQ_URL, Connect, rabbitmq_connect, unique_namespace

pytestmark = pytest.mark.brokers

CONTRACT: list[Callable[[Connect], None]] = [
    test_contract.test_a_published_message_arrives_whole_and_once_acked_is_gone,
    test_contract.test_a_nacked_message_is_delivered_again,
    test_contract.test_what_a_closed_receiver_left_unacked_goes_to_the_next_one,
    test_contract.test_a_group_receives_in_publication_order,
    test_contract.test_deleting_a_namespace_deletes_its_groups_and_their_messages,
]


@pytest.mark.parametrize("case", CONTRACT, ids=lambda case: case.__name__.removeprefix("test_"))
def test_the_contract_holds_with_quorum_queues(case: Callable[[Connect], None]) -> None:
    case(rabbitmq_connect(quorum=True))


def test_a_quorum_groups_queue_is_a_quorum_queue() -> None:
    connect = rabbitmq_connect(quorum=True)
    import aio_pika.exceptions

    from tidings.transports.rabbitmq import RabbitMQBinding

    async def scenario() -> None:
        namespace = unique_namespace()
        async with connect(namespace) as binding:
            receiver = await binding.receiver("billing")
            classic = await RabbitMQBinding.connect(RABBITMQ_URL, namespace)
            try:
                # The same queue declared classic is refused: its type is quorum.
                with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                    await classic.receiver("billing")
            finally:
                await classic.aclose()
            await receiver.delete()

    asyncio.run(scenario())
