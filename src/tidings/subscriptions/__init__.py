"""Subscriptions to `$all`: catch up from a checkpoint, then follow new commits as they land."""

from tidings.subscriptions._async.subscription import AsyncSubscription
from tidings.subscriptions._sync.subscription import Subscription
from tidings.subscriptions.listener import PostgresListener, watch_commits
from tidings.subscriptions.signal import CommitSignal

__all__ = ["AsyncSubscription", "CommitSignal", "PostgresListener", "Subscription", "watch_commits"]
