"""Scheduled messages and durable timeouts, kept in the event store's database."""

from tidings.scheduling._async.scheduler import AsyncScheduler
from tidings.scheduling._sync.scheduler import Scheduler
from tidings.scheduling.scheduled import MessageKind, ScheduledMessage

__all__ = ["AsyncScheduler", "MessageKind", "ScheduledMessage", "Scheduler"]
