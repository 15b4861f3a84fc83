"""A short scripted run of the allocation service: `python -m examples.allocation`.

It creates batches, allocates order lines (warehouse stock first, then the
earliest shipment), runs out of stock (the stock desk is mailed), shrinks a
batch (its latest line is deallocated and allocated again elsewhere), and
prints the event log with the conversation and cause of every event.
"""

from __future__ import annotations

import logging
import sys
from typing import Any
from uuid import UUID

from examples.allocation.bootstrap import bootstrap
from examples.allocation.domain import InvalidSku
from examples.allocation.messages import Allocate, ChangeBatchQuantity, CreateBatch
from tidings import Codec, Command, Envelope, EventStore, MemoryStore, MessageBus


def print_mail(*, to: str, subject: str, body: str) -> None:
    print(f"    mail to {to}: {subject!r}")


def run_scenario(bus: MessageBus, store: EventStore) -> None:
    """Send the scenario's commands to `bus`, then print what `store` recorded."""
    names: dict[UUID, str] = {}

    def send(command: Command) -> Any:
        envelope = Envelope.new(command)
        names[envelope.message_id] = f"command {len(names) + 1} ({type(command).__name__})"
        print(f"> {command}")
        result = bus.handle(envelope)
        print(f"  = {result!r}")
        return result

    print("Stock of SMALL-TABLE: 20 in the warehouse, 50 due in May, 50 due in March.")
    send(CreateBatch("warehouse-1", "SMALL-TABLE", 20))
    send(CreateBatch("ship-may", "SMALL-TABLE", 50, eta="2031-05-01"))
    send(CreateBatch("ship-march", "SMALL-TABLE", 50, eta="2031-03-01"))

    print("\nWarehouse stock goes first, then the earliest shipment.")
    send(Allocate("order-1", "SMALL-TABLE", 8))
    send(Allocate("order-2", "SMALL-TABLE", 10))
    send(Allocate("order-3", "SMALL-TABLE", 5))

    print("\nOut of stock is a fact, not an error: the command succeeds, the desk is mailed.")
    send(CreateBatch("vase-1", "BLUE-VASE", 2))
    send(Allocate("order-4", "BLUE-VASE", 3))

    print("\nAn unknown SKU is an error, and reaches the caller.")
    try:
        send(Allocate("order-5", "NO-SUCH-THING", 1))
    except InvalidSku as error:
        print(f"  ! {type(error).__name__}: {error}")

    print("\nThe warehouse batch shrinks to 9: order-2 gives way and is allocated again.")
    send(ChangeBatchQuantity("warehouse-1", 9))

    print("\nThe event log (position, stream, version, event; its cause and conversation):")
    codec = Codec()
    for record in store.read_all():
        envelope = codec.envelope(record)
        names[envelope.message_id] = f"event {record.position} ({record.type})"
        cause = names.get(envelope.causation_id) if envelope.causation_id else None
        print(f"  {record.position}. {record.stream} v{record.version}: {envelope.message}")
        print(f"       caused by {cause}, in the conversation of {names[envelope.correlation_id]}")


def main() -> None:
    # The bus logs failed messages with their ids; show them in line with the scenario.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="  log: %(name)s: %(message)s"
    )
    store = MemoryStore()
    run_scenario(bootstrap(send_mail=print_mail, store=store), store)


if __name__ == "__main__":
    main()
