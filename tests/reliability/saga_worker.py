"""Checkout sagas run in a process of their own, to be killed at any moment.

    python -m tests.reliability.saga_worker STORE_URL COUNT

Recovers what an earlier worker left, then starts (or runs on) sagas
`c0`..`c<COUNT-1>`, printing `working` first and `done` at the end. Each
step's effect is a row per idempotency key in the table `effects`, counting
calls; `charge` has a deadline, which every fifth saga misses.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tests.projections.ledger import _run
from tidings.sagas import Saga, SagaRecoveryFailed, SagaRunner, Step, StepContext
from tidings.store.urls import open_store

CHARGE_TIMEOUT = 0.2


def is_slow(saga_id: str) -> bool:
    """Whether the saga's charge misses its deadline: every fifth one."""
    return int(saga_id[1:]) % 5 == 0


def effects_table(store: Any) -> str:
    schema = getattr(store, "schema", None)
    return "effects" if schema is None else f"{schema}.effects"


def checkout(store: Any) -> Saga:
    table = effects_table(store)

    def effect(context: StepContext) -> None:
        with store.transaction() as tx:
            _run(
                tx,
                (
                    f"INSERT INTO {table} (key, calls) VALUES (?, 1) ON CONFLICT (key) "
                    f"DO UPDATE SET calls = {table}.calls + 1",
                    (context.idempotency_key,),
                ),
            )

    def charge(context: StepContext) -> None:
        effect(context)
        time.sleep(CHARGE_TIMEOUT * 2.5 if is_slow(context.saga_id) else 0.01)

    return Saga(
        "Checkout",
        [
            Step("reserve", effect, effect),
            Step("charge", charge, effect, timeout=CHARGE_TIMEOUT),
            Step("ship", effect),
        ],
    )


def prepare(store: Any) -> None:
    with store.transaction() as tx:
        table = effects_table(store)
        _run(tx, (f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, calls INT)", ()))


def main(url: str, count: int) -> None:
    store = open_store(url)
    try:
        prepare(store)
        runner = SagaRunner(store, [checkout(store)], retry_wait=0.01)
        print("working", flush=True)
        try:
            runner.recover()
        except SagaRecoveryFailed as exc:
            print(f"recovery failed: {exc}", file=sys.stderr, flush=True)
        for n in range(count):
            runner.start("Checkout", f"c{n}", {"order": n})
        print("done", flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
