#!/usr/bin/env bash
# Build the page (web/build.sh) and serve it on http://localhost:${PORT:-8000}/ (WebGPU needs a
# secure context: localhost is one).
set -euo pipefail
cd "$(dirname "$0")/.."
web/build.sh
port=${PORT:-8000}
echo "serving web/dist on http://localhost:$port/ (Ctrl-C stops)"
exec python3 -m http.server --bind 127.0.0.1 --directory web/dist "$port"
