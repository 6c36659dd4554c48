"""Vendor destinations: one folder per vendor, discovered by :mod:`datafly.destinations.registry`."""
