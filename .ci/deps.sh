#!/usr/bin/env bash
# Test dependencies outside cargo, installed under target/ (idempotent: fast when already there).
# Run by .ci/run before the tests; run it by hand once before `cargo test` on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

# grpc
# A real gRPC origin for connector/tests/e2e_http2.rs (connector/tests/grpc/): Python grpcio in
# a venv at target/test-venv, pinned. The tests find it at target/test-venv/bin/python (or
# $RINGTUN_TEST_PYTHON).
GRPCIO_VERSION=1.76.0
venv=target/test-venv
if ! "$venv/bin/python" -c "import grpc, sys; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" 2>/dev/null; then
    echo "== installing grpcio $GRPCIO_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio==$GRPCIO_VERSION"
fi
