"""The shared kernel every nocode service is built from.

Envelope, outbox, consumer runtime, database, settings, logging, metrics and
health live here; nothing in this package knows about a particular service.
"""
