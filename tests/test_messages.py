import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from tidings import Command, Envelope, Event, new_id
from tidings.messages import utc_from_ns


@dataclass(frozen=True)
class Shipped(Event, type_name="orders.Shipped", version=2):
    order_id: str


@dataclass(frozen=True, slots=True)
class Packed(Event, type_name="orders.Packed"):
    order_id: str


@dataclass(frozen=True)
class Ship(Command):
    order_id: str


def test_event_type_name_defaults_to_the_class_name_and_version_to_one() -> None:
    @dataclass(frozen=True)
    class Delivered(Event):
        order_id: str

    assert Delivered.__event_type__ == "Delivered"
    assert Delivered.__event_version__ == 1


def test_subclass_keywords_set_the_stored_name_and_schema_version() -> None:
    assert Shipped.__event_type__ == "orders.Shipped"
    assert Shipped.__event_version__ == 2


def test_slotted_dataclasses_keep_their_declared_type_name() -> None:
    assert Packed.__event_type__ == "orders.Packed"
    assert "__slots__" in Packed.__dict__


def test_schema_version_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="schema version"):

        class Bad(Event, version=0):
            pass


def test_new_envelope_starts_its_own_conversation() -> None:
    envelope = Envelope.new(Ship("o1"))
    assert envelope.correlation_id == envelope.message_id
    assert envelope.causation_id is None
    assert envelope.occurred_at.tzinfo is not None


def test_caused_envelope_keeps_the_conversation_and_names_its_cause() -> None:
    command = Envelope.new(Ship("o1"), headers={"user": "ann"})
    event = command.caused(Shipped("o1"))
    assert event.correlation_id == command.correlation_id
    assert event.causation_id == command.message_id
    assert event.message_id != command.message_id


def test_envelope_refuses_what_is_not_a_message() -> None:
    with pytest.raises(TypeError, match="dict"):
        Envelope.new({"order_id": "o1"})  # type: ignore[type-var]


def test_new_ids_are_version_7_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(isinstance(i, UUID) and i.version == 7 for i in ids)
    assert len(set(ids)) == 1000
    # Same-millisecond ids share a prefix but differ randomly; across milliseconds they sort.
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)


SEEDED_ID = """
import random
from tidings import new_id
random.seed(0)  # an application seeding the global generator, as tests often do
print(new_id().int & (2**62 - 1))
"""


def test_ids_stay_unique_across_processes_that_seed_the_global_random() -> None:
    random_parts = {
        subprocess.run(
            [sys.executable, "-c", SEEDED_ID],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(3)
    }
    assert len(random_parts) == 3


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(writer, str(new_id().int & (2**62 - 1)).encode())
        os._exit(0)
    os.close(writer)
    theirs = int(os.read(reader, 64))
    os.waitpid(child, 0)
    assert new_id().int & (2**62 - 1) != theirs


def test_an_envelope_can_be_dated_when_its_message_was_handed_over() -> None:
    handed_over = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    envelope = Envelope.new(Ship("o1"), occurred_at=handed_over)
    assert envelope.occurred_at == handed_over


@pytest.mark.parametrize(
    "ns",
    [0, 1_999, 1_000_000_000_000_500, 1_780_000_000_123_456_789, 4_102_444_799_999_999_999],
)
def test_nanoseconds_since_the_epoch_become_the_utc_time_to_the_microsecond(ns: int) -> None:
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    assert utc_from_ns(ns) == expected
    assert utc_from_ns(ns).tzinfo is UTC
