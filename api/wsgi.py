"""WSGI entry point for gunicorn: ``gunicorn api.wsgi:app``."""

from api import create_app
from common import logs
from common.config import Settings

logs.configure(Settings.from_env(), "api")
app = create_app()
