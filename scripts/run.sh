#!/usr/bin/env bash
# Runs xinwei on the embedded default: SQLite under instance/, demo data, the fake WeChat
# server on loopback, a background worker and the WeChat simulator. Installs what it needs first.
# Usage: scripts/run.sh      (PORT=5000 and FAKE_WECHAT_PORT=8701 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

PORT=${PORT:-5000}
FAKE_PORT=${FAKE_WECHAT_PORT:-8701}
export XINWEI_ENV=development
export PUBLIC_URL=${PUBLIC_URL:-http://127.0.0.1:$PORT}
export WECHAT_API_BASE=${WECHAT_API_BASE:-http://127.0.0.1:$FAKE_PORT}
export WECHAT_OPEN_BASE=${WECHAT_OPEN_BASE:-http://127.0.0.1:$FAKE_PORT}

FLASK=".venv/bin/flask --app app"
$FLASK db upgrade
$FLASK demo load
$FLASK content load
$FLASK content demo-videos

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

.venv/bin/python -m wechat.fake --port "$FAKE_PORT" &
pids+=($!)
$FLASK jobs worker --workers 2 &
pids+=($!)

echo
echo "xinwei is running:"
echo "  WeChat simulator:  $PUBLIC_URL/simulator"
echo "  webhook:           $PUBLIC_URL/wechat"
echo "  fake WeChat API:   $WECHAT_API_BASE"
echo "  background worker: flask jobs worker (SQLite queue under instance/)"
echo "  console:           $PUBLIC_URL/console/  (demo accounts admin / staff / school,"
echo "                     password xinwei-demo-2026; school = 毫末示范大学's school admin)"
echo
echo "Try it: in the simulator tap 毫末平台 → 心委培训, open the article, fill in the profile as"
echo "  学校 毫末示范大学, 姓名 张三, 学号 2024001 (on the demo roster: verified at once)."
echo
.venv/bin/flask --app wsgi:app run --host 127.0.0.1 --port "$PORT" --with-threads &
pids+=($!)
wait -n "${pids[@]}"
