#!/usr/bin/env bash
# The test suite with its real parts: starts the local Kafka broker unless one is running,
# runs every test (unit, agent, integration, scenario), and stops the broker if it started it.
# Extra arguments go to pytest. Exits non-zero when any test fails or when no test ran.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KAFKA="$ROOT/deploy/kafka-local.sh"

# The tests find the broker this script manages (KAFKA_PORT moves both). Test-only variables use
# the DGTEST_ prefix: every DISTILLGUARD_ variable must be a setting, or the settings refuse it.
export DGTEST_BOOTSTRAP="${DGTEST_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}"

started=0
if ! bash "$KAFKA" status >/dev/null 2>&1; then
  bash "$KAFKA" start
  started=1
fi
cleanup() { if [[ $started == 1 ]]; then bash "$KAFKA" stop; fi; }
trap cleanup EXIT

set +e
"$ROOT/.venv/bin/python" -m pytest "$@"
code=$?
set -e
if [[ $code == 5 ]]; then
  echo "run-tests: pytest collected no tests: that is a failure, not a pass" >&2
fi
exit $code
