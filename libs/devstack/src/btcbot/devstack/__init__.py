"""The development stack that `btcbot up` and the tests share.

- infra: find NATS, Redis and Postgres, or start embedded ones (embedded, probes, endpoints, natsusers);
- procs: ManagedProcess, the one process abstraction for servers and services (log file, own session,
  readiness probe, stop by signals then SIGKILL, idempotent);
- redisha: a local Redis master, replicas and Sentinels (RedisGroup) for failover tests;
- supervisor and restarts: the services of a run, restarted with backoff under a budget per time window.
"""
