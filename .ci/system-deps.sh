#!/usr/bin/env bash
# System packages the test suite drives for real: Debian's chromium (browser tests) and redis-server; a CJK font.
# Installs them when missing and we may (root with apt-get); otherwise says what the tests will skip.
set -u
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "WARNING: ${missing[*]} missing and cannot be installed here: those tests will skip" >&2
  fi
fi
# A CJK font, so the Chinese in browser screenshots is readable. Optional (tests pass without it), so it is
# installed on its own: a mirror without it must not cost us chromium or redis-server.
if ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei >/dev/null 2>&1 \
    || echo "note: no CJK font installed; Chinese in screenshots will show as boxes" >&2
fi
# A Redis server on 127.0.0.1:6379 for the Redis tests (REDIS_URL overrides); start one if none answers.
if [ -z "${REDIS_URL:-}" ] && command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
fi
exit 0
