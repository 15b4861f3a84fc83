"""`--app`: the application's codec decodes payloads, and an async factory is awaited."""

from __future__ import annotations

import json
from typing import Any

import anyio

from tests.cli import app_factories
from tests.cli.conftest import Store, invoke
from tests.cli.test_tail import tail
from tidings import AsyncSQLDeadLetters, NewEvent, new_id, open_async_store
from tidings.messages import utc_from_ns

SYNC_APP = "tests.cli.app_factories:bus"
ASYNC_APP = "tests.cli.app_factories:async_bus"


def stored(type_name: str, version: int, data: dict[str, Any]) -> NewEvent:
    """An event as an older release of the application stored it."""
    return NewEvent(
        event_id=new_id(),
        type=type_name,
        schema_version=version,
        data=json.dumps(data).encode(),
        correlation_id=new_id(),
        causation_id=None,
        occurred_at=utc_from_ns(0),
    )


def _old_events(store: Store) -> None:
    store.append_raw(
        "Doc-1",
        stored("cli_app.Renamed", 1, {"name": "draft"}),
        stored("cli_app.Garbled", 1, {"text": "x"}),
        stored("cli_app.Unknown", 1, {"a": 1}),
    )


def _data(output: str) -> list[tuple[Any, Any]]:
    lines = [json.loads(line) for line in output.splitlines()]
    return [(line["data"], line.get("undecoded")) for line in lines]


def test_app_decodes_with_its_codec_and_marks_what_it_cannot(store: Store) -> None:
    _old_events(store)
    for factory in (SYNC_APP, ASYNC_APP):
        result = invoke("events", "--json", "--app", factory, "--store", store.url)
        assert result.exit_code == 0, result.output
        renamed, garbled, unknown = _data(result.stdout)
        assert renamed == ({"title": "draft"}, None)  # upcast by the application's codec
        assert garbled == ({"text": "x"}, "KeyError: 'missing'")  # its upcaster raised
        assert unknown[0] == {"a": 1}
        assert (
            unknown[1] == "unknown event type 'cli_app.Unknown': no event class has this type name"
        )


def test_without_the_app_the_old_shape_is_marked_undecoded_when_asked_to_decode(
    store: Store,
) -> None:
    _old_events(store)
    asked = invoke("events", "--json", "-i", "tests.cli.app_factories", "--store", store.url)
    renamed, _, _ = _data(asked.stdout)
    assert renamed[0] == {"name": "draft"}
    assert "no upcaster from v1 to v2" in renamed[1]
    # Not asked to decode, the stored data is shown as it is, unmarked.
    plain = invoke("events", "--json", "--store", store.url)
    assert [undecoded for _, undecoded in _data(plain.stdout)] == [None, None, None]


def test_tables_and_trees_mark_undecoded_payloads(store: Store) -> None:
    _old_events(store)
    table = invoke("events", "--app", ASYNC_APP, "--store", store.url)
    assert table.exit_code == 0, table.output
    assert '{"title":"draft"}' in table.stdout
    assert "(undecoded: KeyError: 'missing')" in table.stdout
    first = json.loads(invoke("events", "--json", "--store", store.url).stdout.splitlines()[1])
    tree = invoke("trace", first["correlation_id"], "--app", SYNC_APP, "--store", store.url)
    assert tree.exit_code == 0, tree.output
    assert "(undecoded: KeyError: 'missing')" in tree.stdout


def test_dlq_retry_awaits_an_async_factory_and_retries_on_its_bus(store: Store) -> None:
    async def fail_once() -> str:
        event_store = open_async_store(store.url)
        try:
            bus = await app_factories.async_bus(event_store)
            await bus.handle(app_factories.Renamed("final"))
            assert isinstance(bus.dead_letters, AsyncSQLDeadLetters)
            (letter,) = await bus.dead_letters.list()
            return str(letter.id)
        finally:
            await event_store.aclose()

    app_factories.broken["mail"] = True
    letter_id = anyio.run(fail_once)
    shown = invoke("dlq", "show", letter_id, "--json", "--app", ASYNC_APP, "--store", store.url)
    assert json.loads(shown.stdout)["event"] == {"title": "final"}

    app_factories.broken["mail"] = False
    retried = invoke("dlq", "retry", letter_id, "--app", ASYNC_APP, "--store", store.url)
    assert retried.exit_code == 0, retried.output
    assert "delivered" in retried.stdout
    assert app_factories.mailed[-1] == "final"
    assert invoke("dlq", "count", "--store", store.url).stdout.strip() == "0"


def test_a_factory_of_the_wrong_kind_exits_2_with_one_line(store: Store) -> None:
    cases = {
        "sync_factory_of_an_async_bus": "returned AsyncMessageBus; a factory of "
        "MessageBus is a plain def taking an EventStore",
        "async_factory_of_something_else": "returned str, not an AsyncMessageBus",
    }
    for name, reason in cases.items():
        result = invoke("events", "--app", f"tests.cli.app_factories:{name}", "--store", store.url)
        assert result.exit_code == 2
        assert reason in result.output


def test_tail_follows_with_the_apps_codec_in_a_process_of_its_own(store: Store) -> None:
    _old_events(store)
    with tail(store, "--json", "--from-start", "--app", ASYNC_APP) as running:
        renamed, garbled, unknown = running.event(), running.event(), running.event()
        store.append_raw("Doc-2", stored("cli_app.Renamed", 1, {"name": "later"}))
        later = running.event()
        assert running.stop() == 0
    assert (renamed["data"], "undecoded" in renamed) == ({"title": "draft"}, False)
    assert garbled["undecoded"] == "KeyError: 'missing'"
    assert unknown["data"] == {"a": 1}
    assert later["data"] == {"title": "later"}
