#!/usr/bin/env bash
# Production serving: migrate, collect static files, then hand the process to gunicorn
# (exec, so signals from systemd/docker reach gunicorn's master directly).
# Configuration comes from the environment (docs/api.md section 11, docs/deployment.md).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
GUNICORN="${GUNICORN:-.venv/bin/gunicorn}"

if [[ -z "${SECRET_KEY:-}" ]]; then
    if [[ "${MEDIKIT_ALLOW_EPHEMERAL_SECRET:-}" == "1" ]]; then
        # The key signs admin sessions and CSRF tokens: a random one logs staff out at
        # every restart and differs between servers, so it is for throwaway runs only.
        echo "serve.sh: WARNING: no SECRET_KEY, using a random one for this process only" \
             "(MEDIKIT_ALLOW_EPHEMERAL_SECRET=1); admin sessions end at restart." >&2
        SECRET_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')"
        export SECRET_KEY
    else
        echo "serve.sh: SECRET_KEY is not set. Set it to a long random value shared by" \
             "every server, e.g. SECRET_KEY=\$(python3 -c 'import secrets;" \
             "print(secrets.token_urlsafe(50))'). For a throwaway run only, set" \
             "MEDIKIT_ALLOW_EPHEMERAL_SECRET=1." >&2
        exit 2
    fi
fi

if [[ -z "${ALLOWED_HOSTS:-}" && "${DEBUG:-0}" != "1" ]]; then
    echo "serve.sh: WARNING: ALLOWED_HOSTS is empty: every request will answer 400." \
         "Set it to the host names clients use, comma-separated." >&2
fi

if [[ "${MEDIKIT_SKIP_MIGRATE:-}" != "1" ]]; then
    "$PYTHON" manage.py migrate --noinput
fi
"$PYTHON" manage.py collectstatic --noinput --verbosity 0

exec "$GUNICORN" medikit.wsgi -c gunicorn.conf.py "$@"
