"""The gateway: the ASGI app that takes events in (see CONTRACT.md, "Ingestion API")."""
