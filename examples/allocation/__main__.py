"""The allocation service from the command line.

    python -m examples.allocation                 # the scripted scenario, in memory
    python -m examples.allocation serve           # the HTTP service (127.0.0.1:8000)
    python -m examples.allocation serve --redis redis://127.0.0.1:6379   # and its Redis channels
    python -m examples.allocation serve --no-worker   # background work left to `tidings worker`
    python -m examples.allocation serve --no-access-log   # no line logged per request
    python -m examples.allocation demo            # a scenario against the running service

The scripted scenario creates batches, allocates order lines (warehouse stock first, then the
earliest shipment), runs out of stock (the stock desk is mailed), shrinks a
batch (its latest line is deallocated and allocated again elsewhere), and
prints the event log with the conversation and cause of every event, then
the read model of each order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any
from uuid import UUID

from examples.allocation.bootstrap import bootstrap
from examples.allocation.domain import InvalidSku
from examples.allocation.messages import (
    Allocate,
    ChangeBatchQuantity,
    CreateBatch,
    GetAllocations,
)
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

    print("\nThe read model, which follows the log (GetAllocations):")
    for orderid in ("order-1", "order-2", "order-3", "order-4"):
        print(f"  {orderid}: {bus.handle(GetAllocations(orderid))}")


def scenario() -> None:
    # The bus logs failed messages with their ids; show them in line with the scenario.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="  log: %(name)s: %(message)s"
    )
    store = MemoryStore()
    run_scenario(bootstrap(send_mail=print_mail, store=store), store)


def serve(
    host: str,
    port: int,
    store_url: str | None,
    redis_url: str | None,
    worker: bool = True,
    access_log: bool = True,
) -> None:
    import uvicorn

    from examples.allocation.channels import (
        CHANGE_BATCH_QUANTITY,
        LINE_ALLOCATED,
        REDIS_URL_ENV,
    )
    from examples.allocation.worker import NO_WORKER_ENV
    from tidings.store.urls import STORE_URL_ENV, default_store_url, parse_store_url

    if store_url:
        os.environ[STORE_URL_ENV] = store_url
    if redis_url:
        os.environ[REDIS_URL_ENV] = redis_url
    url = f"http://{host}:{port}"
    print(f"Allocation service on {url}, store {parse_store_url(default_store_url())}")
    redis = os.environ.get(REDIS_URL_ENV)
    if redis:
        print(f"Redis {redis}: {CHANGE_BATCH_QUANTITY} in, {LINE_ALLOCATED} out")
    print("Try next, in another terminal:")
    print(
        f"  curl -X POST {url}/add_batch -H 'content-type: application/json' "
        """-d '{"ref": "b1", "sku": "LAMP", "qty": 10, "eta": null}'"""
    )
    print(
        f"  curl -X POST {url}/allocate -H 'content-type: application/json' "
        """-d '{"orderid": "o1", "sku": "LAMP", "qty": 2}'"""
    )
    print(f"  curl {url}/allocations/o1")
    print(f"  uv run python -m examples.allocation demo --url {url}   # a scripted scenario")
    print(f"  open {url}/docs                                  # the OpenAPI documentation")
    print("  uv run tidings events -i examples.allocation.messages    # the event log")
    print("  uv run tidings tail -i examples.allocation.messages      # events as they commit")
    print("  uv run tidings trace <correlation_id> -i examples.allocation.messages")
    print("  uv run tidings projections status -p examples.allocation.views:projections")
    print("  uv run tidings projections status -p examples.allocation.stock:projections")
    if not worker:
        print("Background work: run `uv run tidings worker examples.allocation.worker:worker`")
        os.environ[NO_WORKER_ENV] = "1"
    # The app opens the database that TIDINGS_STORE names when it starts.
    uvicorn.run("examples.allocation.service:app", host=host, port=port, access_log=access_log)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.allocation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("scenario", help="the scripted scenario, in memory (the default)")
    serving = commands.add_parser("serve", help="run the HTTP service with uvicorn")
    serving.add_argument("--host", default="127.0.0.1")
    serving.add_argument("--port", type=int, default=8000)
    serving.add_argument("--store", help="store URL (default: $TIDINGS_STORE, else SQLite)")
    serving.add_argument(
        "--redis",
        metavar="URL",
        help="speak the Redis channels change_batch_quantity and line_allocated "
        "(default: $TIDINGS_REDIS_URL, else off)",
    )
    serving.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="leave the background work (stock figures, Redis channels) to "
        "`tidings worker examples.allocation.worker:worker`",
    )
    serving.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="log no line per request (a formatted line and a write to stdout each)",
    )
    demo = commands.add_parser("demo", help="drive a running service through a scenario")
    demo.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.host, args.port, args.store, args.redis, args.worker, args.access_log)
    elif args.command == "demo":
        from examples.allocation.demo import run_demo

        run_demo(args.url)
    else:
        scenario()


if __name__ == "__main__":
    main()
