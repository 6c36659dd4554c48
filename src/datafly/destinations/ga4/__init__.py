"""Google Analytics 4 Measurement Protocol destination (``vendor: ga4``).

Which reference each rule follows (Google's GA4 developer documentation, protocol/ga4/...):

- transport (``destination.py``): ``POST {origin}/mp/collect?measurement_id=…&api_secret=…``,
  JSON body; EU collection at ``region1.google-analytics.com`` (reference, "Transport");
  ``/debug/mp/collect`` for the ``validate`` setting ("Validate events"). At most 25 events per
  request and a body smaller than 130 kB ("Send events", limitations); one ``client_id`` and one
  ``user_id`` per request (both are request-level fields); each event carries its own
  ``timestamp_micros``, at most 72 hours back (the timestamp hierarchy of "Send events").
- ids (``identity.py``): ``client_id`` from the site's ``_ga`` cookie, ``session_id`` from its
  ``_ga_<container>`` cookie; ``user_data.sha256_email_address[]`` / ``sha256_phone_number[]``
  ("Send user-provided data"); Consent Mode ``consent.ad_user_data`` / ``ad_personalization``
  (reference, "consent"). Google normalises an email before hashing by removing the dots before
  ``@`` of gmail.com and googlemail.com addresses; the gateway hashes the trimmed, lower-cased
  address before any destination sees it, so that rule cannot be applied to the hash: it is sent as
  received, as Segment and RudderStack send a value that arrives already hashed.
- parameters (``params.py``): the recommended events' parameters (``purchase``, ``refund``,
  ``add_to_cart``, ``view_item_list``, ``page_view`` ...); where Google is silent on the Segment
  side, RudderStack's GA4 mapping chooses the property (``value`` from ``total``, ``value``,
  ``revenue``) and Segment's GA4 actions decide what is refused (``transaction_id`` required for
  purchase and refund, ``currency`` required with a ``value``).
- GA's rules (``validation.py``): names, reserved names and prefixes, counts and lengths, as the
  validation server reports them (reference "Reserved names" and "Validation codes"; "Event
  collection limits" for the page_location/page_referrer/page_title exceptions). GA4 answers 2xx to
  anything, so an event that breaks a rule is recorded as a skip with GA's code, never sent.
- answers (``responses.py``): 2xx from ``/mp/collect`` is done; the validation server's
  ``validationMessages`` become one outcome per event.

Where Google is silent: ``engagement_time_msec`` is the event's own value, else 1 (GA asks for the
time since the previous event, which a server cannot know; 1 keeps the event engaged in Realtime);
a visitor without a ``_ga`` cookie gets a stable ``<int>.<int>`` id derived from its anonymous id
(Segment and RudderStack also fall back to the anonymous id); the session number is not sent (the
Measurement Protocol documents only ``session_id``); ``ip_override`` carries ``context.ip`` when it
is an IP address.
"""

from datafly.destinations.ga4.destination import Ga4Destination as DESTINATION

__all__ = ["DESTINATION"]
