"""WSGI entry point: `gunicorn medikit.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medikit.settings")

application = get_wsgi_application()
