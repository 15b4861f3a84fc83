"""Subscriptions to `$all`: catch-up, the hand-over to live under load, wake-ups and polling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.projections.ledger import Backend, backend, deposit, note
from tests.store.readable import wait_readable
from tidings.subscriptions import AsyncSubscription, Subscription


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as found:
        yield found


def test_the_hand_over_from_catch_up_to_live_has_no_gap_and_no_duplicate(env: Backend) -> None:
    store = env.open(False)
    appended: list[int] = []
    for i in range(200):
        appended.extend(store.append(f"Account-{i % 7}", [deposit("a")]).positions)
    lock = threading.Lock()

    def write(writer: int) -> None:
        for i in range(60):
            positions = store.append(
                f"Account-{writer}-{i}", [deposit("a"), deposit("b")]
            ).positions
            with lock:
                appended.extend(positions)

    subscription = Subscription(store, batch_size=50, poll_interval=0.5)
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in writers:
        thread.start()
    seen: list[int] = []
    deadline = time.monotonic() + 20
    for record in subscription:
        seen.append(record.position)
        if len(seen) == 200 + 4 * 60 * 2 or time.monotonic() > deadline:
            break
    for thread in writers:
        thread.join()
    subscription.close()
    assert seen == sorted(set(seen))
    assert seen == sorted(appended)
    store.close()


def test_an_async_subscription_follows_concurrent_writers(env: Backend) -> None:
    async def main() -> tuple[list[int], list[int]]:
        store = env.open(True)
        appended: list[int] = []
        for _ in range(50):
            appended.extend((await store.append("Account-0", [deposit("a")])).positions)

        async def write(writer: int) -> None:
            for i in range(40):
                result = await store.append(f"Account-{writer}-{i}", [deposit("a")])
                appended.extend(result.positions)
                await asyncio.sleep(0)

        subscription = AsyncSubscription(store, batch_size=20, poll_interval=0.5)
        seen: list[int] = []

        async def read() -> None:
            async for record in subscription:
                seen.append(record.position)
                if len(seen) == 50 + 4 * 40:
                    return

        await asyncio.wait_for(asyncio.gather(read(), *(write(w) for w in range(4))), 20)
        await subscription.aclose()
        await store.aclose()
        return seen, appended

    seen, appended = asyncio.run(main())
    assert seen == sorted(appended)


def test_a_filtered_subscription_sees_only_its_categories_and_types(env: Backend) -> None:
    store = env.open(False)
    store.append("Account-1", [deposit("a"), note()])
    wait_readable(store, store.append("Note-1", [note(), deposit("b")]).positions[-1])
    by_category = Subscription(store, categories=["Account"], poll_interval=0.1)
    by_type = Subscription(store, types=["tests.Deposited"], poll_interval=0.1)
    assert [(r.stream, r.type) for r in by_category.read()] == [
        ("Account-1", "tests.Deposited"),
        ("Account-1", "tests.Noted"),
    ]
    assert [r.stream for r in by_type.read()] == ["Account-1", "Note-1"]
    assert by_category.read() == by_type.read() == []
    by_category.close()
    by_type.close()
    store.close()


def test_commits_wake_a_waiting_subscription_at_once_in_process_or_by_notify(env: Backend) -> None:
    store = env.open(False)
    subscription = Subscription(store, poll_interval=30)
    got: list[float] = []

    def follow() -> None:
        for _ in subscription:
            got.append(time.monotonic())
            return

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.2)
    store.append("Account-1", [deposit("a")])
    # On a shared PostgreSQL another session's open transaction may hold the commit back;
    # from the moment it is readable the announcement must bring it at once, not the poll.
    wait_readable(store)
    readable_at = time.monotonic()
    reader.join(20)
    subscription.close()
    assert got and got[0] - readable_at < 1.0
    store.close()


def test_commits_of_another_store_on_the_file_are_found_by_polling(tmp_path: Path) -> None:
    with backend("sqlite", tmp_path) as env:
        reader_store, writer_store = env.open(False), env.open(False)  # as two processes would
        subscription = Subscription(reader_store, poll_interval=0.05)
        assert subscription.read() == []
        seen = subscription.signal.count
        writer_store.append("Account-1", [deposit("a")])
        subscription.wait(seen)
        assert [r.stream for r in subscription.read()] == ["Account-1"]
        subscription.close()
        reader_store.close()
        writer_store.close()


def test_a_lost_listen_connection_falls_back_to_polling(tmp_path: Path) -> None:
    import psycopg

    with backend("postgres", tmp_path) as env:
        store = env.open(False)
        subscription = Subscription(store, poll_interval=0.2)
        store.append("Account-1", [deposit("a")])
        assert read_until_some(subscription) == ["Account-1"]
        channel = store.notify_channel
        dsn = store.conninfo
        with psycopg.connect(dsn, autocommit=True) as admin:
            deadline = time.monotonic() + 5
            killed = 0
            while not killed and time.monotonic() < deadline:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE query = %s",
                    (f'LISTEN "{channel}"',),
                ).fetchone()[0]  # type: ignore[index]
                time.sleep(0.02)
            assert killed == 1
        store.append("Account-1", [deposit("b")])
        assert read_until_some(subscription) == ["Account-1"]
        subscription.close()
        store.close()


def read_until_some(subscription: Subscription) -> list[str]:
    """The streams of the next batch, waiting for one (PostgreSQL may show a commit late)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = subscription.signal.count
        batch = subscription.read()
        if batch:
            return [record.stream for record in batch]
        subscription.wait(seen)
    return []
