"""One invocation, exactly once: what the handlers are and how their ticks are applied (I/O).

``declarations`` each handler described once: its core, schedule, the state part it owns and reads,
                 its history needs, maximum lead and metrics
``invoke``       the commit protocol (numbered steps in its docstring), ``Runtime``, ``invoke``
``layout``       where the state lives: the hot part (base and deltas), history, the forecast part
``clock``        the store's clock and how far a tick may lead it
``shards``       a catalog split into shards, each its own store; their merged view
``catalogs``     catalogs from a file, the package default or the store's compiled forms
``pool``         the pooled statistics' objects: gathered from every shard, published once a day
``settings``     one frozen ``Settings`` from the environment (and flags)
"""
