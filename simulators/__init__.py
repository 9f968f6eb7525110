"""Local stand-ins for the external systems: Vertica, MIDAS and Swing chat.

Real HTTP servers (one app, three path prefixes) that ``nocode up`` starts unless
real endpoints are configured, and that tests serve on a free port. Each has the
same fault switch, so tests can make it refuse, fail or be slow.
"""
