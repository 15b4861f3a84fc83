"""An event-sourced order and user, with a read model answering queries (CQRS), on tidings.

`domain` holds the `Order` and `User` aggregates, `messages` their commands,
events and queries, `views` the order list read model, `handlers` the
service layer, `bootstrap` the composition root; `python -m examples.orders`
runs a short scenario.
"""
