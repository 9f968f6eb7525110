"""The target context: target requests, from request to approval and extraction.

Filled by the saga issue; for now it answers health and metrics.
"""
