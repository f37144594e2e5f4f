#!/usr/bin/env bash
# Installs the Go tools given as arguments (module/path/cmd/name@version)
# with `go install` unless that version is already in GOBIN (else
# GOPATH/bin). Used by `make test`; the integration tests look there too.
set -euo pipefail
GO=${GO:-go}
bin=$("$GO" env GOBIN)
[ -n "$bin" ] || bin="$("$GO" env GOPATH | cut -d: -f1)/bin"
for tool in "$@"; do
  name=$(basename "${tool%@*}")
  version=${tool##*@}
  if [ -x "$bin/$name" ]; then
    have=$("$bin/$name" version 2>&1 || true)
    if printf '%s\n' "$have" | grep -Eq "(^|[^0-9.])v?${version#v}([^0-9.]|\$)"; then
      continue
    fi
  fi
  echo "installing: $tool" >&2
  (cd "${TMPDIR:-/tmp}" && "$GO" install "$tool")
done
