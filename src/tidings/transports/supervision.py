"""Keeping a relay or a consumer at work while its broker comes and goes.

An application says how to connect with a function of its store that
returns an async context manager: entering it connects to the broker and
gives the `OutboxRelay` (or the consumer), leaving it closes the connection::

    @asynccontextmanager
    async def relay(store: AsyncEventStore) -> AsyncIterator[OutboxRelay]:
        binding = await RedisStreamsBinding.connect("redis://127.0.0.1:6379", "shop")
        try:
            yield OutboxRelay(binding, name="outbox-redis")
        finally:
            await binding.aclose()

    await AsyncRelayService(store, relay).run()  # until stop()

When the broker goes away (connecting fails, the consumer's `run` raises,
the relay parks on a publication that outlived its own retries), the service
leaves the connection, waits, and connects again: the waits double from
`Backoff.first` up to `Backoff.most`, each announced by one warning line on
the `tidings.transports` logger. A relay found parked once connected (by
this service, or by an earlier process) is resumed: the event it stopped on
is published again, never skipped. `tidings relay` and `tidings consume` run
these services until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio

from tidings.errors import ConfigurationError
from tidings.projections import AsyncProjectionRunner, ProjectionState, ProjectionStatus
from tidings.store import AsyncEventStore
from tidings.transports.relay import OutboxRelay

__all__ = [
    "AsyncConsumer",
    "AsyncConsumerService",
    "AsyncRelayService",
    "Backoff",
    "ConsumerConnect",
    "RelayConnect",
]

logger = logging.getLogger("tidings.transports")


class AsyncConsumer(Protocol):
    """A consumer as a service runs it: `run` until `stop`. `AsyncBrokerConsumer` is one."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


RelayConnect = Callable[[AsyncEventStore], AbstractAsyncContextManager[OutboxRelay]]
"""Connects to the broker, given the store, and gives the relay; leaving it disconnects."""

ConsumerConnect = Callable[[AsyncEventStore], AbstractAsyncContextManager[AsyncConsumer]]
"""Connects to the broker, given the store, and gives the consumer; leaving it disconnects."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts to connect: `first` seconds, doubling up to `most`."""

    first: float = 0.5
    most: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.most:
            raise ValueError(f"0 < first <= most, not first={self.first}, most={self.most}")

    def delay(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1 for the first)."""
        return float(min(self.most, self.first * 2 ** min(attempt - 1, 62)))


class _Parked(Exception):
    """The relay parked on a publication: its broker is gone, or refuses the message."""


T = TypeVar("T")


class _Reconnecting(Generic[T]):
    """Enters `connect(store)`, serves what it gives until stopped or failed, and starts over."""

    def __init__(
        self,
        store: AsyncEventStore,
        connect: Callable[[AsyncEventStore], AbstractAsyncContextManager[T]],
        backoff: Backoff,
    ) -> None:
        self.store = store
        self._connect = connect
        self.backoff = backoff
        self.retries = 0
        """How many times this service has connected again since it started."""
        self._stopped = False
        self._wake = anyio.Event()

    @property
    def what(self) -> str:
        raise NotImplementedError

    async def run(self) -> None:
        """Connect and serve until `stop`, connecting again after each failure.

        Returns at once after `stop`, which is final: a stop that comes before
        `run` begins (the worker stopped while starting) is not lost.
        """
        failures = 0
        while not self._stopped:
            started = time.monotonic()
            failure: Exception | None = None
            try:
                async with self._connect(self.store) as target:
                    if not self._stopped:
                        try:
                            await self._serve(target)
                        except ConfigurationError:
                            raise
                        except Exception as exc:
                            failure = exc  # the cause, whatever disconnecting raises after it
            except ConfigurationError:
                raise
            except Exception as exc:
                failure = failure or exc
            if failure is not None:
                if self._stopped:
                    logger.warning("%s: failed while stopping: %s", self.what, _one_line(failure))
                    return
                if time.monotonic() - started >= self.backoff.most:
                    failures = 0  # it had held a good while: this is a new outage
                failures += 1
                self.retries += 1
                delay = self.backoff.delay(failures)
                logger.warning(
                    "%s: %s; connecting again in %.1f s (retry %d)",
                    self.what,
                    _one_line(failure),
                    delay,
                    failures,
                )
                with anyio.move_on_after(delay):
                    await self._wake.wait()

    def stop(self) -> None:
        """Finish what is in hand (a batch, a delivery), leave the connection, return from `run`."""
        self._stopped = True
        self._wake.set()

    async def _serve(self, target: T) -> None:
        raise NotImplementedError


class AsyncRelayService(_Reconnecting[OutboxRelay]):
    """Runs the relay that `connect` gives, over `store`, reconnecting when its broker fails.

    Each connection runs the relay in an `AsyncProjectionRunner` of its own
    (`poll_interval`, `lease` as there); `check_every` seconds the service
    looks whether the relay has parked, which means its broker is gone (the
    relay's own `retry` has already tried, a few seconds long).
    """

    def __init__(
        self,
        store: AsyncEventStore,
        connect: RelayConnect,
        *,
        backoff: Backoff | None = None,
        poll_interval: float = 1.0,
        lease: float = 10.0,
        check_every: float = 0.5,
    ) -> None:
        super().__init__(store, connect, backoff or Backoff())
        self.poll_interval = poll_interval
        self.lease = lease
        self.check_every = check_every
        self._name = "relay"

    @property
    def what(self) -> str:
        return f"relay {self._name}"

    async def _serve(self, target: OutboxRelay) -> None:
        if not isinstance(target, OutboxRelay):
            raise ConfigurationError(f"the relay's connection gave {type(target).__name__}")
        self._name = target.name
        logger.info("%s: connected", self.what)
        runner = AsyncProjectionRunner(
            self.store, [target], poll_interval=self.poll_interval, lease=self.lease
        )
        await runner.prepare()
        if await _state(runner, target.name) is ProjectionState.PARKED:
            logger.info("%s: resuming where it parked", self.what)
            await runner.resume(target.name)
        parked: ProjectionStatus | None = None
        async with runner.running():
            while parked is None and not self._stopped:
                with anyio.move_on_after(self.check_every):
                    await self._wake.wait()
                for found in await runner.status():
                    if found.name == target.name and found.state is ProjectionState.PARKED:
                        parked = found
        # Raised once the runner has stopped, not from within its task group.
        if parked is not None:
            raise _Parked(f"parked at position {parked.failed_position}: {parked.error}")


async def _state(runner: AsyncProjectionRunner, name: str) -> ProjectionState | None:
    for found in await runner.status():
        if found.name == name:
            return found.state
    return None


class AsyncConsumerService(_Reconnecting[AsyncConsumer]):
    """Runs the consumer that `connect` gives, reconnecting when its `run` raises."""

    def __init__(
        self,
        store: AsyncEventStore,
        connect: ConsumerConnect,
        *,
        backoff: Backoff | None = None,
        name: str = "consumer",
    ) -> None:
        # `name` names it in the log until the consumer given has a name of its own.
        super().__init__(store, connect, backoff or Backoff())
        self.name = name
        self._current: AsyncConsumer | None = None

    @property
    def what(self) -> str:
        return self.name

    def stop(self) -> None:
        super().stop()
        if self._current is not None:
            self._current.stop()

    async def _serve(self, target: AsyncConsumer) -> None:
        if not callable(getattr(target, "run", None)) or not callable(
            getattr(target, "stop", None)
        ):
            raise ConfigurationError(
                f"the consumer's connection gave {type(target).__name__}, "
                "which has no run() and stop()"
            )
        named = getattr(target, "name", None)
        if isinstance(named, str):
            self.name = f"consumer {named}"
        logger.info("%s: connected", self.what)
        self._current = target
        try:
            await target.run()
        finally:
            self._current = None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, _Parked):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
