#!/usr/bin/env bash
# What the build and the tests need outside cargo, installed only when missing: idempotent, and
# quick once everything is there (no network then). System packages come from Debian; Python
# packages go into a venv under target/. Run it before building or testing on a fresh machine;
# .ci/run does.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs Debian packages; `apt-get update` runs at most once per invocation, and only when
# something is missing.
updated=0
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: missing $*; run as root, or install: apt-get install -y $*" >&2
        exit 1
    fi
    if [ "$updated" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# etcd
# The tests of several edge nodes start real etcd members (Debian's etcd-server installs the
# binary as /usr/bin/etcd). The etcd-client crate generates its gRPC code with prost-build at
# build time, which runs protoc: prost-build ships no protoc of its own, and etcd-client has no
# option to skip the generation, so protoc and the well-known .proto files come from Debian.
if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
    apt_install etcd-server
fi
if ! command -v protoc >/dev/null 2>&1 || [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then
    apt_install protobuf-compiler libprotobuf-dev
fi

# grpc
# A real gRPC origin for the connector's HTTP/2 end-to-end tests (test-support/grpc/): Python
# grpcio in a venv at target/test-venv, pinned. The tests find it at target/test-venv/bin/python
# (or $RINGTUN_TEST_PYTHON).
GRPCIO_VERSION=1.76.0
venv=target/test-venv
if ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    apt_install python3-venv
fi
if ! "$venv/bin/python" -c "import grpc, sys; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" 2>/dev/null; then
    echo "== installing grpcio $GRPCIO_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio==$GRPCIO_VERSION"
fi
