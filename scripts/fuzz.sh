#!/usr/bin/env bash
# Runs fuzz targets, given as package:Name, each for FUZZTIME.
#
# A target fails when go test -fuzz finds an input that fails, which it
# writes to the package's testdata/fuzz/Name/. go test also fails, rarely,
# without finding one: when -fuzztime ends while a worker is mid-input
# ("context deadline exceeded") or a worker is slow to answer on a loaded
# machine (golang/go#56238, #52569). Such a run is tried once more, and
# fails the build only if that fails too: a real finding always leaves its
# input behind, and reproduces.
set -uo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-50000x}
for t in "$@"; do
  pkg=${t%%:*} name=${t##*:}
  dir=$pkg/testdata/fuzz/$name
  for attempt in 1 2; do
    echo "fuzz $pkg $name"
    before=$(ls "$dir" 2>/dev/null | sort)
    if "$GO" test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME"; then
      break
    fi
    after=$(ls "$dir" 2>/dev/null | sort)
    if [ "$before" != "$after" ] || [ "$attempt" = 2 ]; then
      echo "fuzz $pkg $name failed: see above (a failing input is in $dir when one was found)" >&2
      exit 1
    fi
    echo "fuzz $pkg $name: go test failed without a failing input; trying once more" >&2
  done
done
