"""The mypage_cqrs context: the MyRequest read model, built only from events.

Filled by the saga issue; for now it answers health and metrics.
"""
