# The application image: web (gunicorn), worker and scheduler all run from it.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_ENV=production

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 app

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=app:app . .
# Static files are collected at build time; no database or secret is contacted for it.
RUN SECRET_KEY=collectstatic-only-not-a-real-key-0123456789abcdefghijklmnop \
    ALLOWED_HOSTS=localhost DATABASE_URL=postgresql://build@localhost/build \
    python manage.py collectstatic --noinput \
    && mkdir -p var && chown -R app:app var

USER app
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120", "--access-logfile", "-"]
