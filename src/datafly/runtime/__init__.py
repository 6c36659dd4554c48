"""The process: which roles run (``roles``), the ASGI app and its lifespan (``app``), what a
helper process does first (``children``) and memory hygiene (``memory``)."""
