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
# The real-time tests (a lecture played through at 400 kbit/s: minutes of waiting, little CPU) run
# in a process of their own beside the SQLite pass, so they cost the suite no wall time.
realtime_log=$(mktemp)
env -u TEST_DATABASE_URL .venv/bin/python -m pytest -q -m realtime "$@" >"$realtime_log" 2>&1 &
realtime=$!
echo "== tests on SQLite, files in a local directory"
env -u TEST_DATABASE_URL .venv/bin/python -m pytest -q -m "not realtime" "$@"
echo "== real-time tests (SQLite), run beside the pass above"
status=0
wait "$realtime" || status=$?
cat "$realtime_log"
rm -f "$realtime_log"
# 5: nothing selected (the arguments picked other tests).
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
echo "== tests on PostgreSQL, files in S3 (SeaweedFS, started by the tests)"
TEST_DATABASE_URL=$PG_URL TEST_BLOB_STORE=s3 .venv/bin/python -m pytest -q -m "not realtime" "$@"
