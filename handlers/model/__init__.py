"""The domain, pure: no clock, no environment, no I/O (business time comes from the tick).

``catalog``      products x warehouses and how their demand behaves (parsed and validated)
``bounds``       sizes, magnitudes and business times accepted anywhere
``events``       the invocation event (EventBridge Scheduled Event) -> ``Tick``
``state``        the inventory state: numpy arrays over the series; its binary codec
``logs``         log events and gzip NDJSON log objects, time-ordered keys
``streams``      counter-based random streams per series
``demand``       the simulator's demand: Poisson per series and minute
``purchasing``   the purchase-order book
``projection``   stock projected hour by hour: stockout time and probability
``policy``       the reorder policy: reorder point, safety stock, order quantity
``ordering``     the order-tick and restock cores: (state, tick, catalog, inputs) -> Outcome
"""
