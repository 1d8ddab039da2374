"""Metrics of a committed state (I/O): exposed in a fresh registry, pushed or written.

``metrics``      every metric defined once: type, labels, help, and the value it reads
``publisher``    the runtime's publisher: one Pushgateway group per handler (and shard), or a file
``push``         the Pushgateway transport: a total deadline, basic auth, TLS
"""
