#!/usr/bin/env bash
# System packages the build and the tests need, installed only when missing: idempotent, and
# quick once everything is there (no network then). Run it before building or testing on a
# fresh machine; .ci/run does.
set -euo pipefail

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
