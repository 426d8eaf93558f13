"""WSGI entry point: `gunicorn -c webapp/gunicorn_conf.py wsgi:app`, `flask --app wsgi`."""

from webapp import create_app

app = create_app()
