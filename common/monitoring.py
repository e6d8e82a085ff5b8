"""The Celery app for operators: ``celery -A common.monitoring inspect|events|flower``.

It is built exactly as the API's and the worker's (:func:`common.jobs.make_celery` from the
``MOKSORI_*`` settings), so it reaches the same broker, but it imports neither torch nor the
voices: ``worker.celery_app`` scans the voice repository and loads the synthesis stack, which
monitoring needs none of (and a Flower container should not carry).
"""

from __future__ import annotations

from common.config import process_settings
from common.jobs import make_celery

app = make_celery(process_settings(), main="moksori-monitor")
