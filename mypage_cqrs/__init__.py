"""The mypage_cqrs context: the MyRequest read model, built only from events.

``view`` holds the pure apply rule; ``replay.rebuild`` rebuilds the view from the
start of the topics and swaps it in.
"""
