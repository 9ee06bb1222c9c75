# Tessera web, worker and beat image (docker-compose.yml runs all three from it).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings.production

# GeoDjango loads GDAL, GEOS and PROJ at run time; libgdal32 (Debian 12's GDAL 3.6) pulls in the
# other two. The PostGIS server is the db service, not this image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgdal32 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies from pyproject.toml alone, so that a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code runs from /app (PYTHONPATH), not from an installed copy.
COPY . .

# Static files are collected at build time into STATIC_ROOT (/app/.local/staticfiles), where
# WhiteNoise serves them with hashed names. The key is only needed to import the settings here.
RUN DJANGO_SECRET_KEY=collectstatic-build-only python manage.py collectstatic --no-input -v 0

RUN useradd --system --home-dir /app --shell /usr/sbin/nologin tessera
USER tessera

EXPOSE 8000
CMD ["sh", "scripts/docker-web.sh"]
