"""The pure core: what happens to an event between the gateway and the delivery queues.

Nothing here does I/O or reads globals. In order:

1. ``normalise`` (at the gateway, before anything is stored): both field spellings, defaults,
   validation, and hashing of email and phone (``pii``).
2. ``pipeline.process_event`` (in the processor): duplicate check, visitor profile (user id,
   identify traits, click ids), sessions, consent, routing to integrations.

The processed event is Segment-shaped (camelCase) and always has ``messageId``,
``anonymousId``, ``timestamp``, ``receivedAt``, ``sourceId`` and ``context.ip``,
``context.userAgent``, ``context.session {id, number}``, ``context.traits`` (stored identify
traits, email and phone only as ``email_sha256`` / ``phone_sha256``) and ``context.clickIds``.
"""
