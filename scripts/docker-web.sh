#!/bin/sh
# The web container's start: prepare the database (every step is idempotent), then serve.
set -eu

python manage.py migrate --no-input
python manage.py load_geography
if [ "${TESSERA_LOAD_DEMO:-1}" != 0 ]; then
    python manage.py load_demo
fi
# gunicorn reads WEB_CONCURRENCY for the number of workers.
exec gunicorn config.wsgi --bind "0.0.0.0:${PORT:-8000}" --access-logfile - --workers "${WEB_CONCURRENCY:-3}"
