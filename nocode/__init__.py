"""The ``nocode`` command: starts the platform, serves one service, migrates."""
