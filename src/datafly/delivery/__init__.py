"""Delivery: one worker per integration takes its queue, sends, and settles each event."""
