"""WSGI entry point for gunicorn: ``gunicorn api.wsgi:app``."""

from api import create_app
from common import logs
from common.config import process_settings

logs.configure(process_settings(), "api")
app = create_app()
