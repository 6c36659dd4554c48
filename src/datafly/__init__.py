"""Datafly Signal: server-side event delivery.

An event travels: gateway (``datafly.gateway``) → durable inbox (``datafly.store``) →
processing (``datafly.processing``, pure) → one queue per integration → delivery
(``datafly.delivery``) → a vendor (``datafly.destinations``).
"""

__version__ = "0.1.0"
