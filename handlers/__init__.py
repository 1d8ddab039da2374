"""stockpulse handlers: the deployable Lambda package.

The entry points are ``handlers.<name>.handler(event, context) -> dict`` for the four handlers
(``order_tick``, ``restock``, ``forecast``, ``alert``); everything else lives in wings by role, and
imports run one way, from the top of this list to the bottom (``tests/test_architecture.py`` and the
import contract in ``pyproject.toml`` keep it so; docs/architecture.md draws it):

``order_tick`` ``restock`` ``forecast`` ``alert`` ``app``
    the entry points and the Lambda adapter (settings from the environment, clients built once)
``telemetry/``
    metrics from a committed state, pushed to a Pushgateway or written to the store (I/O)
``runtime/``
    one invocation exactly once: the handlers' declarations, the commit protocol, where state
    lives in the store, shards, catalogs from the store, the pooled statistics' objects, settings (I/O)
``storage/``
    object storage behind one URL: ``file://``, ``s3://``, in memory; deadlines (I/O, bytes only)
``forecasting/``
    the demand model, its baselines and scores, and the forecast and alert cores (pure)
``model/``
    the domain: catalog, state, events, log events, demand, purchase orders, projection, policy,
    and the order-tick and restock cores (pure)
``errors``
    the exception tree, under everything

Pure means no clock, no environment, no network and no files: the wings that do I/O are
``storage``, ``runtime``, ``telemetry`` and the entry points. Importing this package imports
nothing: a Lambda cold start pays only for what its handler uses.
"""
