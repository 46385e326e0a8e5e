#!/usr/bin/env bash
# Make sure a redis-server binary exists (the embedded gateway and the tests start one
# when nothing listens on 127.0.0.1:6379). Installs Debian/Ubuntu's package if missing.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  exit 0  # a Redis already listens; nothing to install
fi
echo "redis-server not found: installing it with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
