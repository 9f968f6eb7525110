"""The core context: the job queue and its workers (filled by the saga issue)."""
