"""Starts and supervises the API and a worker for `make run`.

:func:`worker_argv` and :func:`api_argv` are the one definition of how the two processes are
started; the tests start theirs the same way.
"""

from __future__ import annotations

import sys


def worker_argv(hostname: str) -> list[str]:
    """A Celery worker: prefork with one child, so time limits apply and voices load in it."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO", "--hostname", hostname,
    ]  # fmt: skip


def api_argv(host: str, port: int) -> list[str]:
    """gunicorn bound to ``host:port``; everything else (worker class, processes, threads,
    logger, the hooks that keep /metrics right) is in its config, :mod:`common.gunicorn_conf`,
    which the API image uses too."""
    return [
        sys.executable, "-m", "gunicorn", "api.wsgi:app", "--config", "python:common.gunicorn_conf",
        "--bind", f"{host}:{port}",
    ]  # fmt: skip
