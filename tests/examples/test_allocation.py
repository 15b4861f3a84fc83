import threading
from datetime import date

import pytest

from examples.allocation.bootstrap import bootstrap
from examples.allocation.domain import Batch, InvalidBatch, InvalidSku, OrderLine, Product
from examples.allocation.messages import (
    Allocate,
    Allocated,
    ChangeBatchQuantity,
    CreateBatch,
    Deallocated,
    GetAllocations,
    OutOfStock,
)
from examples.allocation.unit_of_work import InMemoryProductRepository, ProductsUnitOfWork
from tests.examples.running import run_example
from tidings import MemoryStore
from tidings.testing import AggregateScenario, BusScenario, Recorder

TODAY = date(2031, 1, 1)
TOMORROW = date(2031, 1, 2)
LATER = date(2031, 2, 1)


def table(*batches: Batch, version_number: int = 0) -> Product:
    return Product("SMALL-TABLE", batches, version_number)


# The domain, through the aggregate scenario.


def test_warehouse_stock_is_preferred_to_shipments() -> None:
    outcome = (
        AggregateScenario(Product)
        .given(
            table(
                Batch("shipment", "SMALL-TABLE", 100, eta=TOMORROW),
                Batch("stock", "SMALL-TABLE", 100),
            )
        )
        .when(Product.allocate, OrderLine("o1", "SMALL-TABLE", 10))
        .then(Allocated("o1", "SMALL-TABLE", 10, "stock"))
    )
    assert outcome.result == "stock"
    available = {b.reference: b.available_quantity for b in outcome.aggregate.batches}
    assert available == {"stock": 90, "shipment": 100}


def test_the_earliest_shipment_is_preferred() -> None:
    (
        AggregateScenario(Product)
        .given(
            table(
                Batch("later", "SMALL-TABLE", 100, eta=LATER),
                Batch("tomorrow", "SMALL-TABLE", 100, eta=TOMORROW),
                Batch("today", "SMALL-TABLE", 100, eta=TODAY),
            )
        )
        .when(Product.allocate, OrderLine("o1", "SMALL-TABLE", 10))
        .then(Allocated("o1", "SMALL-TABLE", 10, "today"))
    )


def test_a_batch_that_cannot_take_the_whole_line_is_skipped() -> None:
    (
        AggregateScenario(Product)
        .given(
            table(Batch("stock", "SMALL-TABLE", 5), Batch("shipment", "SMALL-TABLE", 50, eta=TODAY))
        )
        .when(Product.allocate, OrderLine("o1", "SMALL-TABLE", 10))
        .then(Allocated("o1", "SMALL-TABLE", 10, "shipment"))
    )


def test_allocation_bumps_the_version_number() -> None:
    outcome = (
        AggregateScenario(Product)
        .given(table(Batch("stock", "SMALL-TABLE", 100), version_number=7))
        .when(Product.allocate, OrderLine("o1", "SMALL-TABLE", 10))
        .then(Allocated("o1", "SMALL-TABLE", 10, "stock"))
    )
    assert outcome.aggregate.version_number == 8


def test_out_of_stock_is_recorded_and_returns_none_without_raising() -> None:
    outcome = (
        AggregateScenario(Product)
        .given(table(Batch("stock", "SMALL-TABLE", 5)))
        .when(Product.allocate, OrderLine("o1", "SMALL-TABLE", 10))
        .then(OutOfStock("SMALL-TABLE"))
    )
    assert outcome.result is None
    assert outcome.aggregate.batches[0].available_quantity == 5
    assert outcome.aggregate.version_number == 0


def test_a_shrinking_batch_deallocates_its_latest_lines_until_it_fits() -> None:
    stock = Batch("stock", "SMALL-TABLE", 20)
    for orderid, qty in [("o1", 5), ("o2", 6), ("o3", 7)]:
        stock.allocate(OrderLine(orderid, "SMALL-TABLE", qty))
    outcome = (
        AggregateScenario(Product)
        .given(table(stock))
        .when(Product.change_batch_quantity, "stock", 8)
        .then(Deallocated("o3", "SMALL-TABLE", 7), Deallocated("o2", "SMALL-TABLE", 6))
    )
    assert outcome.aggregate.batches[0].allocations == (OrderLine("o1", "SMALL-TABLE", 5),)
    assert outcome.aggregate.version_number == 1


def test_a_batch_that_still_fits_deallocates_nothing() -> None:
    stock = Batch("stock", "SMALL-TABLE", 20)
    stock.allocate(OrderLine("o1", "SMALL-TABLE", 5))
    AggregateScenario(Product).given(table(stock)).when(
        Product.change_batch_quantity, "stock", 5
    ).then()


def test_changing_an_unknown_batch_is_an_error() -> None:
    (
        AggregateScenario(Product)
        .given(table(Batch("stock", "SMALL-TABLE", 20)))
        .when(Product.change_batch_quantity, "nope", 5)
        .then_raises(InvalidBatch, match="Invalid batch nope")
    )


# The service layer, through the bus built by the composition root.


@pytest.fixture
def mail() -> Recorder:
    return Recorder()


@pytest.fixture
def service(mail: Recorder) -> BusScenario:
    return BusScenario.using(lambda store: bootstrap(store=store, send_mail=mail))


def test_a_line_is_allocated_to_a_batch_created_before(service: BusScenario) -> None:
    outcome = (
        service.given_handled(CreateBatch("b1", "LAMP", 100))
        .when(Allocate("o1", "LAMP", 10))
        .then(Allocated("o1", "LAMP", 10, "b1"))
    )
    assert outcome.result == "b1"
    assert outcome.envelopes[0].stream == "Product-LAMP"


def test_batches_with_an_eta_wait_behind_the_earlier_ones(service: BusScenario) -> None:
    service.given_handled(
        CreateBatch("later", "LAMP", 100, eta="2031-02-01"),
        CreateBatch("sooner", "LAMP", 100, eta="2031-01-01"),
    )
    service.when(Allocate("o1", "LAMP", 10)).then(Allocated("o1", "LAMP", 10, "sooner"))


def test_an_unknown_sku_is_an_error_and_commits_nothing(service: BusScenario) -> None:
    service.given_handled(CreateBatch("b1", "LAMP", 100))
    service.when(Allocate("o1", "NOPE", 10)).then_raises(InvalidSku, match="^Invalid sku NOPE$")
    assert service.store.read_all() == []


def test_out_of_stock_succeeds_and_mails_the_stock_desk(
    service: BusScenario, mail: Recorder
) -> None:
    service.given_handled(CreateBatch("b1", "LAMP", 5))
    outcome = service.when(Allocate("o1", "LAMP", 10)).then(OutOfStock("LAMP"))
    assert outcome.result is None
    (call,) = mail.calls
    assert call.kwargs["to"] == "stock@example.com"
    assert call.kwargs["subject"] == "Out of stock: LAMP"
    assert "LAMP" in call.kwargs["body"]


def test_a_failing_mailer_is_dead_lettered_and_the_command_still_succeeds() -> None:
    mail = Recorder(fail_with=ConnectionError("smtp down"))
    service = BusScenario.using(lambda store: bootstrap(store=store, send_mail=mail))
    service.given_handled(CreateBatch("b1", "LAMP", 5))
    outcome = service.when(Allocate("o1", "LAMP", 10)).then(OutOfStock("LAMP"), dead_letters=1)
    assert outcome.dead_letters[0].handler.endswith("send_out_of_stock_notification")
    assert len(mail.calls) == 3


def test_a_shrinking_batch_reallocates_its_lines_in_the_same_conversation(
    service: BusScenario,
) -> None:
    service.given_handled(
        CreateBatch("stock", "LAMP", 50),
        CreateBatch("shipment", "LAMP", 50, eta="2031-01-01"),
        Allocate("o1", "LAMP", 20),
        Allocate("o2", "LAMP", 20),
    )
    outcome = service.when(ChangeBatchQuantity("stock", 25)).then(
        Deallocated("o2", "LAMP", 20), Allocated("o2", "LAMP", 20, "shipment")
    )
    deallocated, reallocated = outcome.envelopes
    assert reallocated.causation_id == deallocated.message_id
    assert reallocated.correlation_id == deallocated.correlation_id == deallocated.causation_id


def test_changing_an_unknown_batch_reaches_the_caller(service: BusScenario) -> None:
    service.when(ChangeBatchQuantity("nope", 5)).then_raises(
        InvalidBatch, match="Invalid batch nope"
    )


def test_one_bus_serves_concurrent_requests_without_overselling() -> None:
    store = MemoryStore()
    mail = Recorder()
    bus = bootstrap(store=store, send_mail=mail)
    bus.handle(CreateBatch("b1", "LAMP", 3))
    results: list[str | None] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(bus.handle(Allocate(f"o{i}", "LAMP", 1)))
        )
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (results.count("b1"), results.count(None)) == (3, 5)
    assert [r.version for r in store.read_stream("Product-LAMP")] == list(range(1, 9))
    assert len(mail.calls) == 5


def test_the_in_memory_read_model_follows_the_log_as_lines_move() -> None:
    bus = bootstrap(store=MemoryStore(), send_mail=Recorder())
    bus.handle(CreateBatch("stock", "LAMP", 20))
    bus.handle(CreateBatch("shipment", "LAMP", 20, eta="2031-01-01"))
    bus.handle(Allocate("o1", "LAMP", 10))
    bus.handle(Allocate("o2", "LAMP", 10))
    assert bus.handle(GetAllocations("o2")) == [{"sku": "LAMP", "batchref": "stock"}]
    bus.handle(ChangeBatchQuantity("stock", 15))
    assert bus.handle(GetAllocations("o1")) == [{"sku": "LAMP", "batchref": "stock"}]
    assert bus.handle(GetAllocations("o2")) == [{"sku": "LAMP", "batchref": "shipment"}]
    assert bus.handle(GetAllocations("o3")) == []


def test_bootstrap_takes_a_unit_of_work_or_a_store_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        bootstrap(uow=ProductsUnitOfWork(MemoryStore()), store=MemoryStore())


# The repository seam.


def test_changes_are_discarded_when_the_unit_of_work_rolls_back() -> None:
    uow = ProductsUnitOfWork(MemoryStore())
    uow.products.add(Product("LAMP", [Batch("b1", "LAMP", 10)]))
    with uow:
        product = uow.products.get("LAMP")
        assert product is not None
        product.allocate(OrderLine("o1", "LAMP", 4))
    stored = uow.products.get("LAMP")
    assert stored is not None
    assert stored.batches[0].available_quantity == 10
    assert stored.pending_events == ()
    assert uow.store.read_all() == []


def test_committed_changes_are_kept_without_their_events() -> None:
    products: dict[str, Product] = {}
    uow = ProductsUnitOfWork(MemoryStore(), InMemoryProductRepository(products))
    uow.products.add(Product("LAMP", [Batch("b1", "LAMP", 10)]))
    with uow:
        product = uow.products.get_by_batchref("b1")
        assert product is not None
        product.allocate(OrderLine("o1", "LAMP", 4))
        uow.commit()
    assert products["LAMP"].batches[0].available_quantity == 6
    assert products["LAMP"].pending_events == ()
    assert [r.type for r in uow.store.read_all()] == ["allocation.Allocated"]
    assert uow.products.get_by_batchref("nope") is None


# The runnable scenario.


def test_the_scenario_runs_from_the_repository_root() -> None:
    out = run_example("examples.allocation")
    assert "mail to stock@example.com: 'Out of stock: BLUE-VASE'" in out
    assert "! InvalidSku: Invalid sku NO-SUCH-THING" in out
    assert (
        "Allocated(orderid='order-2', sku='SMALL-TABLE', qty=10, batchref='ship-march')\n"
        "       caused by event 5 (allocation.Deallocated), "
        "in the conversation of command 10 (ChangeBatchQuantity)"
    ) in out
    assert "order-2: [{'sku': 'SMALL-TABLE', 'batchref': 'ship-march'}]" in out
    assert "order-4: []" in out
