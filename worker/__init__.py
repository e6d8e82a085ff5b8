"""The synthesis worker: a Celery app whose processes hold every member's voice in memory."""
