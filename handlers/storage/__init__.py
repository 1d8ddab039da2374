"""Object storage behind one location URL: the only wing that talks to disks and S3 for bytes.

``base``         the ``Store`` protocol (read / write by compare-and-swap / put once / ...) and ``Versioned``
``location``     ``open_store(url)``: ``file://DIR`` or ``s3://BUCKET/PREFIX``
``file``         the file backend (lock-free compare-and-swap by ``link(2)``)
``s3``           the S3 backend (conditional writes); botocore's errors translated in one place
``memory``       an in-memory store with the same contract: a test double and the benchmarks' store
``deadline``     one time budget per invocation that every storage call shares

Stores know keys and bytes, nothing of the domain.
"""
