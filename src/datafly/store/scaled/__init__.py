"""The scale-out backend: Redis Streams for the inbox and queues (``redis_queue``,
``redis_scripts``), PostgreSQL for documents, dead letters and the log (``postgres``)."""
