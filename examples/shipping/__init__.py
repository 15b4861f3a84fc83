"""Two services exchanging integration events over NATS JetStream: orders and shipping.

Each service has its own SQLite store, its own outbox relay (its log
published to a stream of its own) and its own inbox consumer (the other
service's stream, received exactly once into its store):

- **Event-carried state transfer.** Orders publishes `CustomerRegistered`
  and `CustomerMoved` with the customer's name and address; shipping keeps
  a local copy of them (`customers` table) and never asks orders for one.
- **Event notification.** Orders publishes `OrderPaid` with nothing but the
  order's id; shipping, notified, asks orders what to ship (a NATS
  request to the orders service) and dispatches a shipment. It ignores
  `OrderPlaced`: an unpaid order is not shipped.
- Shipping publishes `ShipmentDispatched`; orders, receiving it, marks the
  order shipped.

`python -m examples.shipping` runs both services in one process (each with
its own store file, connections, relay and consumer) through a short
scenario and prints what each holds in the end.
"""
