"""Dead-letter stores: in memory, and durable in the store's SQLite file or PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import anyio
import pytest

from tests.store.backends import BACKENDS
from tidings import (
    AsyncMessageBus,
    DeadLetterNotFound,
    DeadLetterNotRetryable,
    Event,
    MessageBus,
    Router,
)
from tidings.codec import Codec
from tidings.dead_letters import (
    AsyncSQLDeadLetters,
    DeadLetter,
    DeadLetters,
    SQLDeadLetters,
    UndecodedEvent,
)
from tidings.messages import Envelope


@dataclass(frozen=True)
class Shipped(Event, type_name="test.dl.Shipped"):
    order_id: str
    amount: Decimal


def letter(order_id: str = "o1", handler: str = "tests.mail") -> DeadLetter:
    envelope = Envelope.new(Shipped(order_id, Decimal("9.90")), headers={"tenant": "t1"})
    try:
        raise ConnectionError("mail server down")
    except ConnectionError as exc:
        return DeadLetter.of(envelope.stored(f"Order-{order_id}", 3, 42), handler, exc, 3)


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with BACKENDS[request.param](tmp_path) as open_store:
        yield open_store


def test_a_durable_letter_keeps_everything_and_survives_a_new_store(opener: Any) -> None:
    store = opener(False)
    original = letter()
    SQLDeadLetters(store).add(original)
    store.close()

    reopened = opener(False)
    try:
        letters = SQLDeadLetters(reopened)
        (found,) = letters.list()
        assert found == original
        assert found.envelope.message == Shipped("o1", Decimal("9.90"))
        assert found.envelope.headers == {"tenant": "t1"}
        assert (found.envelope.stream, found.envelope.version, found.envelope.position) == (
            "Order-o1",
            3,
            42,
        )
        assert "ConnectionError: mail server down" in found.traceback
        assert letters.get(original.id) == original
        assert letters.count() == 1
    finally:
        reopened.close()


def test_letters_are_listed_oldest_first_filtered_and_limited(opener: Any) -> None:
    store = opener(False)
    try:
        letters = SQLDeadLetters(store)
        first, second, third = letter("a"), letter("b", "tests.sms"), letter("c")
        for each in (first, second, third):
            letters.add(each)
        assert [x.id for x in letters.list()] == [first.id, second.id, third.id]
        assert [x.id for x in letters.list(handler="tests.mail")] == [first.id, third.id]
        assert [x.id for x in letters.list(limit=2)] == [first.id, second.id]
        with pytest.raises(ValueError, match="limit"):
            letters.list(limit=0)
    finally:
        store.close()


def test_a_cursor_pages_through_the_letters_and_counts_follow_the_filter(opener: Any) -> None:
    store = opener(False)
    try:
        letters = SQLDeadLetters(store)
        first, second, third = letter("a"), letter("b", "tests.sms"), letter("c")
        for each in (first, second, third):
            letters.add(each)
        assert [x.id for x in letters.list(after=first.id, limit=1)] == [second.id]
        assert [x.id for x in letters.list(after=second.id)] == [third.id]
        assert letters.list(after=third.id) == []
        assert [x.id for x in letters.list(handler="tests.mail", after=first.id)] == [third.id]
        assert letters.count() == 3
        assert letters.count(handler="tests.mail") == 2
        assert letters.count(handler="tests.none") == 0
        assert letters.count_by_handler() == {"tests.mail": 2, "tests.sms": 1}
        letters.remove(first.id)
        with pytest.raises(KeyError, match=str(first.id)):
            letters.list(after=first.id)
    finally:
        store.close()


def test_letters_failed_in_the_same_microsecond_page_by_id(opener: Any) -> None:
    store = opener(False)
    try:
        letters = SQLDeadLetters(store)
        base = letter()
        same = [replace(base, id=UUID(int=n)) for n in (3, 1, 2)]
        for each in same:
            letters.add(each)
        pages = [letters.list(limit=1)]
        while pages[-1]:
            pages.append(letters.list(after=pages[-1][-1].id, limit=1))
        assert [page[0].id.int for page in pages[:-1]] == [1, 2, 3]
    finally:
        store.close()


def test_removing_returns_the_letter_and_an_unknown_id_is_a_key_error(opener: Any) -> None:
    store = opener(False)
    try:
        letters = SQLDeadLetters(store)
        kept = letter()
        letters.add(kept)
        assert letters.remove(kept.id) == kept
        assert letters.list() == []
        with pytest.raises(DeadLetterNotFound, match=str(kept.id)):
            letters.remove(kept.id)
        with pytest.raises(DeadLetterNotFound):
            letters.get(uuid4())
    finally:
        store.close()


def test_an_event_whose_class_is_unknown_is_listed_undecoded(opener: Any) -> None:
    store = opener(False)
    try:
        SQLDeadLetters(store).add(letter())

        class Blind(Codec):
            def resolve(self, type_name: str) -> type[Event]:
                if type_name == Shipped.__event_type__:
                    return super().resolve("no.such.Type")
                return super().resolve(type_name)

        (found,) = SQLDeadLetters(store, codec=Blind()).list()
        assert isinstance(found.envelope.message, UndecodedEvent)
        assert found.message_type == "test.dl.Shipped"
        assert '"order_id":"o1"' in found.envelope.message.data
    finally:
        store.close()


def test_the_async_store_does_the_same(opener: Any) -> None:
    async def scenario() -> None:
        store = opener(True)
        try:
            letters = AsyncSQLDeadLetters(store)
            kept = letter()
            await letters.add(kept)
            assert await letters.list() == [kept]
            assert await letters.get(kept.id) == kept
            assert await letters.count() == 1
            assert await letters.remove(kept.id) == kept
            assert await letters.count() == 0
        finally:
            await store.aclose()

    anyio.run(scenario)


def test_the_memory_store_lists_filters_and_limits() -> None:
    letters = DeadLetters()
    first, second = letter("a"), letter("b", "tests.sms")
    letters.add(first)
    letters.add(second)
    assert letters.list(handler="tests.sms") == [second]
    assert letters.list(limit=1) == [first]
    assert letters.count() == 2
    assert letters.remove(first.id) == first
    with pytest.raises(DeadLetterNotFound):
        letters.get(first.id)


def test_the_memory_store_pages_and_counts_as_the_durable_one() -> None:
    letters = DeadLetters()
    first, second, third = letter("a"), letter("b", "tests.sms"), letter("c")
    for each in (first, second, third):
        letters.add(each)
    assert letters.list(after=first.id) == [second, third]
    assert letters.list(handler="tests.mail", after=first.id, limit=1) == [third]
    assert letters.count(handler="tests.sms") == 1
    assert letters.count_by_handler() == {"tests.mail": 2, "tests.sms": 1}
    letters.remove(first.id)
    with pytest.raises(KeyError, match=str(first.id)):
        letters.list(after=first.id)


def test_a_memory_store_keeps_nothing_beside_its_log() -> None:
    from tidings.store import MemoryStore

    with pytest.raises(TypeError, match="SQLite or PostgreSQL"):
        SQLDeadLetters(MemoryStore())


# The bus records into a durable store and retries from it, in a later process as well.

broken = {"mail": True}
delivered: list[str] = []
listeners = Router()


@listeners.handler
def send_mail(event: Shipped) -> None:
    if broken["mail"]:
        raise ConnectionError("mail server down")
    delivered.append(event.order_id)


def test_a_bus_dead_letters_into_the_store_and_a_new_bus_retries_it(opener: Any) -> None:
    broken["mail"], delivered[:] = True, []
    store = opener(False)
    bus = MessageBus(listeners, retry_waits=False, dead_letters=SQLDeadLetters(store))
    bus.handle(Shipped("o7", Decimal(1)))
    store.close()

    restarted = opener(False)
    try:
        letters = SQLDeadLetters(restarted)
        bus = MessageBus(listeners, retry_waits=False, dead_letters=letters)
        (first,) = letters.list()
        assert first.handler.endswith("send_mail") and first.attempts == 3
        assert bus.retry_dead_letter(first.id) is False
        (second,) = letters.list()
        assert second.id != first.id
        broken["mail"] = False
        assert bus.retry_dead_letter(second.id) is True
        assert delivered == ["o7"]
        assert letters.list() == []
    finally:
        restarted.close()


def test_the_async_bus_dead_letters_into_the_async_store(opener: Any) -> None:
    broken["mail"], delivered[:] = True, []

    async def scenario() -> None:
        store = opener(True)
        try:
            letters = AsyncSQLDeadLetters(store)
            bus = AsyncMessageBus(listeners, retry_waits=False, dead_letters=letters)
            envelope = Envelope.new(Shipped("o8", Decimal(2)))
            await bus.handle(envelope)
            (found,) = await letters.list()
            assert found.envelope.message_id == envelope.message_id
            assert found.correlation_id == envelope.correlation_id
            broken["mail"] = False
            assert await bus.retry_dead_letter(found.id) is True
            assert await letters.count() == 0
        finally:
            await store.aclose()

    anyio.run(scenario)
    assert delivered == ["o8"]


def test_retrying_an_undecoded_letter_or_an_unknown_handler_is_refused(opener: Any) -> None:
    store = opener(False)
    try:
        letters = SQLDeadLetters(store)
        bus = MessageBus(listeners, retry_waits=False, dead_letters=letters)
        stranger = letter(handler="tests.gone")
        letters.add(stranger)
        with pytest.raises(DeadLetterNotRetryable, match=r"tests\.gone"):
            bus.retry_dead_letter(stranger.id)

        class Blind(Codec):
            def resolve(self, type_name: str) -> type[Event]:
                return super().resolve("no.such.Type")

        blind = SQLDeadLetters(store, codec=Blind())
        undecoded = letter()
        blind.add(undecoded)
        blind_bus = MessageBus(listeners, retry_waits=False, dead_letters=blind)
        with pytest.raises(DeadLetterNotRetryable, match="not loaded"):
            blind_bus.retry_dead_letter(undecoded.id)
        assert letters.count() == 2
    finally:
        store.close()


def test_a_failing_dead_letter_store_does_not_fail_the_sender(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tidings.store import SQLiteStore

    broken["mail"] = True
    store = SQLiteStore(tmp_path / "events.db")
    letters = SQLDeadLetters(store)
    store.close()
    bus = MessageBus(listeners, retry_waits=False, dead_letters=letters)
    bus.handle(Shipped("o9", Decimal(3)))
    assert any("cannot record the dead letter" in r.getMessage() for r in caplog.records)


def test_a_table_made_before_parked_letters_gains_the_column(opener: Any) -> None:
    store = opener(False)
    try:
        store.append(
            "Order-o1", [Codec(Shipped).new_event(Envelope.new(Shipped("o1", Decimal(1))))]
        )
        schema = getattr(store, "schema", None)
        table = "tidings_dead_letters" if schema is None else f'"{schema}".dead_letters'
        blob = "BLOB" if schema is None else "bytea"
        with store.transaction() as tx:
            tx.connection.execute(
                f"CREATE TABLE {table} (id TEXT PRIMARY KEY, handler TEXT NOT NULL,"
                " error TEXT NOT NULL, traceback TEXT NOT NULL, attempts INTEGER NOT NULL,"
                " failed_at TEXT NOT NULL, message_id TEXT NOT NULL, message_type TEXT NOT NULL,"
                f" schema_version INTEGER NOT NULL, data {blob} NOT NULL,"
                " correlation_id TEXT NOT NULL, causation_id TEXT, occurred_at TEXT NOT NULL,"
                f" headers {blob} NOT NULL, stream TEXT, version BIGINT, position BIGINT)"
            )
        letters = SQLDeadLetters(store)
        plain = letter()
        parked = DeadLetter.of(plain.envelope, "projection:p", RuntimeError("x"), 1, parked=True)
        letters.add(plain)
        letters.add(parked)
        assert [(x.id, x.parked) for x in letters.list()] == [(plain.id, False), (parked.id, True)]
    finally:
        store.close()
