#!/usr/bin/env bash
# hack/fuzz.sh DURATION: runs every Go fuzz target of the module, one at a time, for DURATION
# each (a Go duration such as 10s or 10m, or a count such as 1000x), then prints a table: target,
# executions, new interesting inputs, result. Exits 1 if any target failed (a crasher is written by
# go test to <package>/testdata/fuzz/<Target>/: check it in with the fix), 2 on bad usage.
#
# Targets are discovered with `go test -list '^Fuzz'` in every package that has a func Fuzz... in
# a _test.go file. Environment:
#   FUZZ_PARALLEL  workers per target (go test -parallel), default: go's (GOMAXPROCS)
#   FUZZ_MINIMIZETIME  time spent minimizing each new input (go test -fuzzminimizetime), default
#                  5s: go's 60s default would spend most of a short run minimizing the large YAML
#                  and JSON inputs instead of fuzzing
#   FUZZ_SLOW_MATCH  targets ("package.Target", extended regexp) whose every execution runs
#                  programs (iptables-restore in a network namespace); they minimize new inputs
#                  with at most 10 executions (-fuzzminimizetime 10x), else minimizing takes
#                  nearly all their time (56 executions in 150 s instead of ~1 800 in 120 s).
#                  Default: 'Kernel$'
#   FUZZ_MATCH     only targets whose "package.Target" matches this extended regexp
#   FUZZ_LOGDIR    where the per-target logs go (default: a temporary directory, kept on failure)
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 DURATION   (e.g. 10s, 10m, 500x)" >&2
	exit 2
fi
duration=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

logdir=${FUZZ_LOGDIR:-$(mktemp -d /tmp/vpcnat-fuzz.XXXXXX)}
mkdir -p "$logdir"
parallel=()
if [[ -n "${FUZZ_PARALLEL:-}" ]]; then
	parallel=(-parallel "$FUZZ_PARALLEL")
fi

# Packages with a fuzz function in a test file (a cheap filter), then the real list from go test.
mapfile -t dirs < <(grep -rlE --include='*_test.go' --exclude-dir=.git --exclude-dir=bin --exclude-dir=testdata '^func Fuzz[A-Z0-9_a-z]*\(' . |
	grep -vE '^\./(\.git|bin|vendor)/' | xargs -r -n1 dirname | sort -u)
targets=()
for d in "${dirs[@]}"; do
	if ! out=$(go test -list '^Fuzz' "$d" 2>&1); then
		echo "go test -list in $d failed:" >&2
		echo "$out" >&2
		exit 1
	fi
	while read -r name; do
		[[ $name == Fuzz* ]] || continue
		if [[ -n "${FUZZ_MATCH:-}" ]] && ! [[ "$d.$name" =~ $FUZZ_MATCH ]]; then
			continue
		fi
		targets+=("$d $name")
	done <<<"$out"
done
if [[ ${#targets[@]} -eq 0 ]]; then
	echo "no fuzz targets found" >&2
	exit 1
fi

# deadline_race LOG: the run failed only with Go's bare shutdown error: its one failure line is
# "context deadline exceeded", and it wrote no failing input and printed no panic.
deadline_race() {
	grep -qxE '[[:space:]]*context deadline exceeded' "$1" &&
		! grep -qE 'Failing input written to|^panic:|fuzzing process hung|^\s+[a-z_]+_test\.go:[0-9]+:' "$1"
}

slow=${FUZZ_SLOW_MATCH:-'Kernel$'}
rows=()
failed=0
corpus_only=0
reruns=0
total_execs=0
start=$(date +%s)
for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	log="$logdir/$(echo "${dir#./}" | tr / _).$name.log"
	echo "fuzz: $dir $name for $duration (log: $log)" >&2
	minimize=${FUZZ_MINIMIZETIME:-5s}
	if [[ "$dir.$name" =~ $slow ]]; then
		minimize=10x
	fi
	rc=0
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" -fuzzminimizetime "$minimize" \
		"${parallel[@]}" "$dir" >"$log" 2>&1 || rc=$?
	note=
	if [[ $rc -ne 0 ]] && deadline_race "$log"; then
		# Go's coordinator can fail a target with a bare "context deadline exceeded" when
		# -fuzztime runs out while a worker is still busy (go.dev/issue/75804): no input failed
		# and none was written. Run the target once more; a second failure counts.
		echo "fuzz: $dir $name: bare 'context deadline exceeded' at the end of -fuzztime, no failing input; running it again" >&2
		mv "$log" "$log.first"
		rc=0
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" -fuzzminimizetime "$minimize" \
			"${parallel[@]}" "$dir" >"$log" 2>&1 || rc=$?
		reruns=$((reruns + 1))
		note=" (second run: the first ended in Go's -fuzztime shutdown race, see $log.first)"
	fi
	# The last progress line: "fuzz: elapsed: 10s, execs: 12345 (1234/sec), new interesting: 3 (total: 25)".
	last=$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -n1 || true)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	interesting=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	execs=${execs:-0}
	interesting=${interesting:-0}
	total_execs=$((total_execs + execs))
	if [[ $rc -eq 0 ]] && grep -qE '^(ok|PASS)' "$log"; then
		result="PASS$note"
		if [[ $execs -eq 0 ]]; then
			# The whole duration went to running the seed corpus and the cached inputs (the
			# baseline coverage): they passed, but nothing new was tried. Say so.
			result="PASS (corpus only: $duration ran out before the first new input)"
			corpus_only=$((corpus_only + 1))
		fi
	else
		result=FAIL
		failed=$((failed + 1))
		input=$(sed -nE 's/.*Failing input written to (.*)$/\1/p' "$log" | head -n1)
		[[ -n $input ]] && result="FAIL ($dir/$input)"
		echo "--- $dir $name failed (exit $rc); end of $log:" >&2
		tail -n 40 "$log" >&2
	fi
	rows+=("$(printf '%-24s %-24s %12s %12s  %s' "${dir#./}" "$name" "$execs" "$interesting" "$result")")
done

printf '\n%-24s %-24s %12s %12s  %s\n' PACKAGE TARGET EXECUTIONS INTERESTING RESULT
printf '%s\n' "${rows[@]}"
printf '%d targets, %d executions, %d failed, %d corpus only, %ds (%s each)' \
	"${#targets[@]}" "$total_execs" "$failed" "$corpus_only" "$(($(date +%s) - start))" "$duration"
if [[ $failed -eq 0 && $reruns -eq 0 && -z "${FUZZ_LOGDIR:-}" ]]; then
	rm -rf "$logdir"
	printf '\n'
else
	printf '; logs in %s\n' "$logdir"
fi
if [[ $failed -gt 0 ]]; then
	exit 1
fi
