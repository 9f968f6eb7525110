"""The core context: a durable job queue and its workers (training, extraction, LMS sends)."""
