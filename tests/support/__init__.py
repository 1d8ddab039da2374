"""Helpers the tests share (no test module imports another):

``ticks``            events, test catalogs, schedules of ticks and a runner
``crash``            a store that crashes before its n-th call; the busy catalog; snapshots
``cli``              the command line in a subprocess; the one-line error check
``catalogs``         generated catalogs of many products
``paths``            demand paths for projection and policy tests
``emitted``          a short replay of the real handlers: every log event and metric they emit
``servers``          real servers on 127.0.0.1 (moto, Pushgateway, Prometheus, Alertmanager, LocalStack)
``storage_contract`` the storage contract, run on every backend
``feeds``            a shop's feed objects (NDJSON, CSV, gzip) in hourly partitions by arrival
"""
