"""The allocation service over HTTP, as a real process, on SQLite and on PostgreSQL.

The read model is inline: a read right after a write sees it. Some reads pass
the write's `X-Log-Position` as `?after=`, which the service still takes.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.allocation.views import ALLOCATIONS_VIEW, projections
from tests.examples.service import ROOT, Service, running_service
from tidings.integrations.fastapi import POSITION_HEADER
from tidings.projections import ProjectionRunner
from tidings.store.urls import open_store

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with running_service(request.param, tmp_path_factory.mktemp(request.param)) as service:
        yield service


@pytest.fixture
def sku() -> str:
    return f"LAMP-{uuid.uuid4().hex[:8]}"


def post(service: Service, path: str, body: Any) -> Any:
    with service.client() as client:
        return client.post(path, json=body)


def get(service: Service, path: str, **params: Any) -> Any:
    with service.client() as client:
        return client.get(path, params=params)


def test_a_line_is_allocated_and_shows_in_the_read_model(service: Service, sku: str) -> None:
    later = post(
        service, "/add_batch", {"ref": f"{sku}-later", "sku": sku, "qty": 10, "eta": "2031-02-01"}
    )
    sooner = post(
        service, "/add_batch", {"ref": f"{sku}-sooner", "sku": sku, "qty": 10, "eta": "2031-01-01"}
    )
    assert (later.status_code, sooner.status_code) == (201, 201)
    allocated = post(service, "/allocate", {"orderid": f"o-{sku}", "sku": sku, "qty": 3})
    assert (allocated.status_code, allocated.json()) == (202, {"batchref": f"{sku}-sooner"})
    events = all_events(service, through=position(allocated))
    [event] = [e for e in events if e["stream"] == f"Product-{sku}"]
    assert allocated.headers[POSITION_HEADER] == str(event["position"])
    view = get(service, f"/allocations/o-{sku}", after=position(allocated))
    assert (view.status_code, view.json()) == (200, [{"sku": sku, "batchref": f"{sku}-sooner"}])


def test_out_of_stock_is_accepted_without_a_batch(service: Service, sku: str) -> None:
    post(service, "/add_batch", {"ref": f"{sku}-b", "sku": sku, "qty": 2, "eta": None})
    allocated = post(service, "/allocate", {"orderid": f"o-{sku}", "sku": sku, "qty": 3})
    assert (allocated.status_code, allocated.json()) == (202, {"batchref": None})
    assert get(service, f"/allocations/o-{sku}", after=position(allocated)).status_code == 404


def test_an_unknown_sku_is_a_400_with_its_name(service: Service, sku: str) -> None:
    response = post(service, "/allocate", {"orderid": "o1", "sku": sku, "qty": 1})
    assert (response.status_code, response.json()) == (400, {"message": f"Invalid sku {sku}"})
    assert POSITION_HEADER not in response.headers


def test_an_order_without_allocations_is_a_404(service: Service) -> None:
    response = get(service, "/allocations/no-such-order")
    assert response.status_code == 404
    assert "no-such-order" in response.json()["message"]


def test_a_shrinking_batch_reallocates_its_latest_line(service: Service, sku: str) -> None:
    stock, shipment = f"{sku}-stock", f"{sku}-shipment"
    post(service, "/add_batch", {"ref": stock, "sku": sku, "qty": 20, "eta": None})
    post(service, "/add_batch", {"ref": shipment, "sku": sku, "qty": 20, "eta": "2031-01-01"})
    first, second = f"first-{sku}", f"second-{sku}"
    for orderid in (first, second):
        assert post(service, "/allocate", {"orderid": orderid, "sku": sku, "qty": 10}).json() == {
            "batchref": stock
        }
    changed = post(service, "/change_batch_quantity", {"ref": stock, "qty": 15})
    assert changed.status_code == 202
    after = position(changed)
    assert get(service, f"/allocations/{first}", after=after).json() == [
        {"sku": sku, "batchref": stock}
    ]
    assert get(service, f"/allocations/{second}", after=after).json() == [
        {"sku": sku, "batchref": shipment}
    ]
    events = [e for e in all_events(service, through=after) if e["stream"] == f"Product-{sku}"]
    assert [e["type"] for e in events] == [
        "allocation.Allocated",
        "allocation.Allocated",
        "allocation.Deallocated",
        "allocation.Allocated",
    ]
    deallocated, reallocated = events[2], events[3]
    assert reallocated["causation_id"] == deallocated["event_id"]
    assert reallocated["correlation_id"] == deallocated["correlation_id"]


def test_changing_an_unknown_batch_is_a_400(service: Service) -> None:
    response = post(service, "/change_batch_quantity", {"ref": "no-such-batch", "qty": 1})
    assert (response.status_code, response.json()) == (
        400,
        {"message": "Invalid batch no-such-batch"},
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/allocate", {"orderid": "o1", "sku": "LAMP"}, "qty"),
        ("/allocate", {"orderid": "o1", "sku": "LAMP", "qty": "many"}, "qty"),
        ("/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 0}, "qty"),
        ("/allocate", {"orderid": "", "sku": "LAMP", "qty": 1}, "orderid"),
        ("/add_batch", {"ref": "b", "sku": "LAMP", "qty": 1, "eta": "tomorrow"}, "eta"),
        ("/add_batch", {"ref": "b", "qty": 1}, "sku"),
        ("/change_batch_quantity", {"ref": "b", "qty": -1}, "qty"),
        ("/allocate", ["not", "an", "object"], "body"),
    ],
)
def test_a_malformed_body_is_a_422_naming_the_field(
    service: Service, path: str, body: Any, field: str
) -> None:
    response = post(service, path, body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/add_batch", {"ref": "b", "sku": "LAMP", "qty": 2**31}, "qty"),
        ("/add_batch", {"ref": "b", "sku": "LAMP", "qty": 2**64}, "qty"),
        ("/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 2**31}, "qty"),
        ("/change_batch_quantity", {"ref": "b", "qty": 2**63}, "qty"),
        ("/add_batch", {"ref": "b" * 256, "sku": "LAMP", "qty": 1}, "ref"),
        ("/add_batch", {"ref": "b", "sku": "L" * 256, "qty": 1}, "sku"),
        ("/allocate", {"orderid": "o" * 256, "sku": "LAMP", "qty": 1}, "orderid"),
        ("/add_batch", {"ref": "a\x00b", "sku": "LAMP", "qty": 1}, "ref"),
        ("/allocate", {"orderid": "o\x001", "sku": "LAMP", "qty": 1}, "orderid"),
        ("/allocate", {"orderid": "o1", "sku": "LA\x00MP", "qty": 1}, "sku"),
        ("/add_batch", {"ref": "b", "sku": "LAMP", "qty": False}, "qty"),
        ("/add_batch", {"ref": "b", "sku": "LAMP", "qty": 1, "eta": 0}, "eta"),
        ("/add_batch", {"ref": "b", "sku": "LAMP", "qty": "1"}, "qty"),
        ("/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 1.0}, "qty"),
        ("/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 1, "quantity": 1}, "quantity"),
    ],
)
def test_what_the_tables_cannot_hold_or_the_schema_forbids_is_a_422_naming_the_field(
    service: Service, path: str, body: Any, field: str
) -> None:
    response = post(service, path, body)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{field}: ")


def test_an_order_id_with_a_nul_is_a_422_naming_it(service: Service) -> None:
    response = get(service, "/allocations/a%00b")
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("orderid: ")


def test_a_batch_reference_taken_already_is_a_409_naming_it(service: Service, sku: str) -> None:
    ref = f"{sku}-b"
    assert post(service, "/add_batch", {"ref": ref, "sku": sku, "qty": 1}).status_code == 201
    again = post(service, "/add_batch", {"ref": ref, "sku": f"{sku}-other", "qty": 1})
    assert (again.status_code, again.json()) == (409, {"message": f"Batch {ref} exists already"})


def test_concurrent_batches_of_one_reference_make_one_batch_and_409s(
    service: Service, sku: str
) -> None:
    ref = f"{sku}-race"
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def add(n: int) -> None:
        with service.client() as client:
            barrier.wait()
            body = {"ref": ref, "sku": f"{sku}-{n % 2}", "qty": 1}
            statuses.append(client.post("/add_batch", json=body).status_code)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201] + [409] * 7, service.log()
    assert post(service, "/change_batch_quantity", {"ref": ref, "qty": 5}).status_code == 202


def test_a_body_that_is_not_json_is_a_422(service: Service) -> None:
    with service.client() as client:
        response = client.post(
            "/allocate", content=b"{oops", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert "JSON" in response.json()["message"]


def test_the_openapi_document_describes_the_endpoints(service: Service) -> None:
    paths = get(service, "/openapi.json").json()["paths"]
    assert {"/add_batch", "/allocate", "/change_batch_quantity", "/allocations/{orderid}"} <= set(
        paths
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_is_kept_across_a_restart(backend: str, tmp_path: Path) -> None:
    with running_service(backend, tmp_path) as service:
        post(service, "/add_batch", {"ref": "b1", "sku": "LAMP", "qty": 10, "eta": None})
        allocated = post(service, "/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 6})
        assert allocated.json() == {"batchref": "b1"}
        service.stop()
        service.start()
        assert get(service, "/allocations/o1", after=position(allocated)).json() == [
            {"sku": "LAMP", "batchref": "b1"}
        ]
        # The product remembers what it gave away: 4 are left, not 10.
        assert post(service, "/allocate", {"orderid": "o2", "sku": "LAMP", "qty": 6}).json() == {
            "batchref": None
        }
        last = post(service, "/allocate", {"orderid": "o3", "sku": "LAMP", "qty": 4})
        assert last.json() == {"batchref": "b1"}
        assert [e["type"] for e in all_events(service, through=position(last))] == [
            "allocation.Allocated",
            "allocation.OutOfStock",
            "allocation.Allocated",
        ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_service_keeps_rows_and_events_in_step(backend: str, tmp_path: Path) -> None:
    with running_service(backend, tmp_path) as service:
        post(service, "/add_batch", {"ref": "b1", "sku": "LAMP", "qty": 10**6, "eta": None})
        answered: list[int] = []

        def allocate_until_killed(worker: int) -> None:
            with service.client() as client:
                for n in itertools.count():
                    body = {"orderid": f"o{worker}-{n}", "sku": "LAMP", "qty": 1}
                    try:
                        answered.append(client.post("/allocate", json=body).status_code)
                    except httpx.TransportError:
                        return

        workers = [threading.Thread(target=allocate_until_killed, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while len(answered) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(answered) >= 20, service.log()
        service.kill()
        for worker in workers:
            worker.join(timeout=30)
        service.start()
        # Rows are read from their table, which no open transaction holds back; the
        # events of the same commits may take a moment to become readable in `$all`.
        committed = service.count_rows("allocations")
        deadline = time.monotonic() + 30
        while True:
            events = all_events(service, through=0)
            allocated = [e for e in events if e["type"] == "allocation.Allocated"]
            if len(allocated) >= committed or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert set(answered) == {202}
        assert len(allocated) >= len(answered)  # a request may commit, then lose its answer
        assert service.count_rows("allocations") == len(allocated)
        # The read model committed with every allocation: at once, none lost.
        last = allocated[-1]["data"]["orderid"]
        view = get(service, f"/allocations/{last}")
        assert view.json() == [{"sku": "LAMP", "batchref": "b1"}]
        assert service.count_rows("allocations_view") == len(allocated)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_read_right_after_each_allocation_sees_it(backend: str, tmp_path: Path) -> None:
    # The read model is inline: no `?after`, no retry, and never a stale answer.
    with running_service(backend, tmp_path) as service, service.client() as client:
        client.post("/add_batch", json={"ref": "b1", "sku": "LAMP", "qty": 10**6, "eta": None})
        wrong: list[tuple[int, int, Any]] = []
        for n in range(200):
            allocated = client.post("/allocate", json={"orderid": f"o{n}", "sku": "LAMP", "qty": 1})
            assert allocated.status_code == 202, allocated.text
            view = client.get(f"/allocations/o{n}")
            if (view.status_code, view.json()) != (200, [{"sku": "LAMP", "batchref": "b1"}]):
                wrong.append((n, view.status_code, view.json()))
        assert wrong == []
        assert service.count_rows("allocations_view") == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_while_the_read_model_is_paused_allocations_are_a_503(backend: str, tmp_path: Path) -> None:
    with running_service(backend, tmp_path) as service:
        assert (
            post(service, "/add_batch", {"ref": "b1", "sku": "LAMP", "qty": 10}).status_code == 201
        )
        store = open_store(service.store_url)
        try:
            runner = ProjectionRunner(store, projections(store))
            runner.pause(ALLOCATIONS_VIEW)
            refused = post(service, "/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 1})
            assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
            assert f"projection '{ALLOCATIONS_VIEW}' is paused" in refused.json()["message"]
            assert service.count_rows("allocations") == 0
            runner.resume(ALLOCATIONS_VIEW)
        finally:
            store.close()
        allocated = post(service, "/allocate", {"orderid": "o1", "sku": "LAMP", "qty": 1})
        assert allocated.json() == {"batchref": "b1"}
        assert get(service, "/allocations/o1").json() == [{"sku": "LAMP", "batchref": "b1"}]
        assert service.count_rows("allocations") == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_position_beyond_the_log_is_a_400_at_once(backend: str, tmp_path: Path) -> None:
    with running_service(backend, tmp_path) as service:
        began = time.monotonic()
        answer = get(service, "/allocations/o1", after=10**12)
        assert time.monotonic() - began < 1.0
        assert answer.status_code == 400
        assert "position 1000000000000 is beyond the log's head" in answer.json()["message"]


def test_the_demo_drives_a_running_service(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path) as service:
        done = subprocess.run(
            [sys.executable, "-m", "examples.allocation", "demo", "--url", service.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert '-> 400 {"message":"Invalid sku NO-SUCH-' in out
    assert "caused by allocation.Deallocated at" in out
    assert '-> 202 {"batchref":null}' in out
    # The line that gave way shows where it went again; the one out of stock has none.
    assert re.search(r"order-\w+-2: 200 \[\{'sku': 'SMALL-TABLE-\w+', 'batchref': 'march-", out)
    assert re.search(r"order-\w+-4: 404 ", out)


def position(response: httpx.Response) -> int:
    """The log position a write answered with, to read the read model after it."""
    return int(response.headers[POSITION_HEADER])


def all_events(service: Service, *, through: int) -> list[dict[str, Any]]:
    """The log up to position `through`, once readable: another transaction open in the
    same PostgreSQL cluster may hold the newest events back from `$all` for a while."""
    deadline = time.monotonic() + 30
    while True:
        events: list[dict[str, Any]] = []
        while page := get(service, "/events", after=events[-1]["position"] if events else 0).json():
            events.extend(page)
        reached = events[-1]["position"] if events else 0
        if reached >= through or time.monotonic() > deadline:
            return events
        time.sleep(0.05)
