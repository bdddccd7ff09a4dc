"""`make bench`: the whole pipeline measured on this machine, against its ceilings and a peer.

`python -m bench.pipeline` (what `make bench` runs) creates its own PostgreSQL database,
starts the local broker, the services and Envoy, and a local site for lookups to fetch,
then measures intake, end-to-end throughput, a backlog drain, cost growth, memory, the
raw ceilings of the same broker, database and gateway, and Celery doing the same items.
It prints one table and writes it as JSON under `.bench/`. `docs/benchmarks.md` has a
recorded run and what each number means.
"""
