"""Runnable applications on tidings: `allocation` (state-stored), `orders` (event-sourced)."""
