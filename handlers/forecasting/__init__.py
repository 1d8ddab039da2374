"""Forecasting, pure: the demand model, its yardsticks, and the cores that plan from it.

``model``        the pooled regression over scaled window features, fitted from exact statistics
``baselines``    naive, seasonal naive, moving average, linear trend (what the model must beat)
``scores``       RMSSE and WAPE
``censored``     the demand stockouts hid, recovered before the model fits (live, hourly, daily flags)
``censored_shop`` a seeded shop whose shelf hides demand, truth known (the tests' and benchmark's)
``pooled``       a shard's statistics of a day (``Pool``), which add up over shards
``planning``     the forecast and alert cores: (state, tick, catalog, inputs) -> Outcome
"""
