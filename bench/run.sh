#!/usr/bin/env bash
# Runs the whole benchmark the way docs/performance.md's table was made:
# installs the peers if needed, then every scenario, writing the report and
# the JSON lines to bench/out/ (and to standard output).
#
#   bash bench/run.sh                         # everything, about 6 minutes
#   bash bench/run.sh --scenario throughput   # extra flags go to proxybench
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
if [ "${SKIP_PEER_INSTALL:-}" = "" ]; then
  bash bench/install-peers.sh || echo "run.sh: peers not installed; proxybench will skip them" >&2
fi
go run ./cmd/proxybench --scenario all --out bench/out "$@"
