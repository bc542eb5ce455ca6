#!/usr/bin/env bash
# The whole test suite: once on SQLite, once on PostgreSQL. Installs what it needs first.
# Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/services.sh

export PYTHONDONTWRITEBYTECODE=1
PG_URL=${TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}

echo "== lint (ruff.toml)"
.venv/bin/ruff check .
echo "== tests on SQLite, files in a local directory"
env -u TEST_DATABASE_URL .venv/bin/python -m pytest -q "$@"
echo "== tests on PostgreSQL, files in S3 (SeaweedFS, started by the tests)"
TEST_DATABASE_URL=$PG_URL TEST_BLOB_STORE=s3 .venv/bin/python -m pytest -q "$@"
