#!/bin/sh
# test-offline.sh: the test suite as someone who cloned the repository sees it — a fresh clone
# of HEAD with no ../shared beside it and no network (a new network namespace with only the
# loopback up), Go modules from the local module cache, onnxruntime from this checkout's .ort/
# (or $ONNXRUNTIME_LIB). Prints the totals and every skipped test with its reason, and exits
# with go test's status. Needs unshare(1) (root, or unprivileged user namespaces).
#
#   scripts/test-offline.sh                # the whole suite
#   scripts/test-offline.sh -run Wanda     # extra go test flags
set -eu
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/shears"
export ONNXRUNTIME_LIB="${ONNXRUNTIME_LIB:-$root/.ort/libonnxruntime.so.1}" GOPROXY=off GOFLAGS=-mod=readonly
cd "$work/shears"
status=0
unshare -rn sh -c 'ip link set lo up && exec go test -count=1 -v "$@" ./...' sh "$@" >"$work/test.log" 2>&1 || status=$?
awk '
	/^=== RUN/ { why = "" }
	/^    [^ ].*\.go:[0-9]+: / { why = $0; sub(/^ +[^ ]+\.go:[0-9]+: /, "", why) }
	/^--- (PASS|FAIL|SKIP): / { n[$2]++ }
	/^--- SKIP: / { printf "skip %s: %s\n", $3, why }
	/^--- FAIL: / { printf "FAIL %s\n", $3 }
	/^FAIL\t/ { print }
	END { printf "top-level tests: %d run, %d passed, %d failed, %d skipped\n", n["PASS:"] + n["FAIL:"] + n["SKIP:"], n["PASS:"], n["FAIL:"], n["SKIP:"] }
' "$work/test.log"
exit $status
