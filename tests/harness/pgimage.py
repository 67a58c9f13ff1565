"""A local stand-in for the official ``postgres:15`` image (no registry is reachable).

Built FROM the harness's debootstrapped ``ardua-test/debian-pg15:bookworm`` with a small
docker-entrypoint.sh offering the parts of the official interface ardua-backup relies on:
PGDATA initialised on first start (as the postgres user), POSTGRES_PASSWORD /
POSTGRES_HOST_AUTH_METHOD, ``postgres`` args passed through, PGDATA a VOLUME. Cached by tag.
"""

from __future__ import annotations

import io

import docker

from tests.harness.images import cached_image, text_tar

POSTGRES_IMAGE = "ardua-test/postgres:15"

ENTRYPOINT = r"""#!/bin/bash
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    args=(-D "$PGDATA" -U "${POSTGRES_USER:-postgres}" -E UTF8 --locale=C.UTF-8
          --auth-local=trust --auth-host="$auth")
    if [ "$auth" != trust ]; then
        if [ -z "${POSTGRES_PASSWORD:-}" ]; then
            echo "error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
            exit 1
        fi
        pwfile="$(mktemp)"
        printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
        args+=(--pwfile="$pwfile")
    fi
    initdb "${args[@]}" >/dev/null
    rm -f "${pwfile:-}"
    echo "host all all all $auth" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
fi
exec "$@"
"""

DOCKERFILE = """FROM {base}
ENV PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
"""


def ensure_postgres_image(client: docker.DockerClient, base: str) -> str:
    """POSTGRES_IMAGE on top of base (the debian-pg15 image), built unless the tag exists."""
    def build() -> None:
        context = text_tar([("Dockerfile", DOCKERFILE.format(base=base), 0o644),
                            ("docker-entrypoint.sh", ENTRYPOINT, 0o755)])
        client.images.build(
            fileobj=io.BytesIO(context), custom_context=True, tag=POSTGRES_IMAGE, pull=False,
            rm=True, forcerm=True,
        )

    return cached_image(client, POSTGRES_IMAGE, build)
