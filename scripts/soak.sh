#!/usr/bin/env bash
# Runs the test suite again and again and tallies failures by test: the check that the
# suite holds on a busy machine, not only on an idle one.
#
#   scripts/soak.sh [--runs N] [--mode sequential|concurrent] [--out DIR]
#
# sequential  N full `cargo test --workspace` runs back to back (doctests included).
# concurrent  N rounds of every test binary started at once (each in its package's
#             folder, as cargo runs it): on 2 cores that is a CI runner with parallel
#             jobs. Doctests are left out of this mode; they are compiled examples.
#
# Exit 0 only if no run failed. The tally is printed and kept in DIR/tally.txt, each
# run's output in DIR/run-*.log. Needs only cargo and the coreutils.
set -euo pipefail

runs=20
mode=sequential
out=target/soak
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --mode) mode="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$mode" in sequential|concurrent) ;; *) echo "soak.sh: --mode sequential|concurrent" >&2; exit 2 ;; esac
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: --runs takes a positive number" >&2; exit 2; }

cd "$(dirname "$0")/.."
rm -rf "$out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# Build once, so that every run measures the tests and not the compiler.
cargo test --workspace --no-run --message-format=json >"$out/build.json" 2>"$out/build.log" || {
    echo "soak.sh: the tests do not build; see $out/build.log" >&2
    exit 2
}

# Test executables with the folder cargo runs each in (its package's manifest folder).
binaries() {
    grep '"profile":{[^}]*"test":true' "$out/build.json" \
        | grep -o '"manifest_path":"[^"]*"\|"executable":"[^"]*"' \
        | paste - - \
        | sed 's/"manifest_path":"\([^"]*\)"\t"executable":"\([^"]*\)"/\1\t\2/' \
        | sed 's#/Cargo.toml\t#\t#'
}

# Failed test names in a libtest log: "test name ... FAILED".
failed_tests() {
    grep -E '^test .* \.\.\. FAILED$' "$1" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' || true
}

failed_runs=0
: >"$out/failures.txt"
for run in $(seq 1 "$runs"); do
    log="$out/run-$run.log"
    started=$(date +%s)
    status=0
    if [[ "$mode" == sequential ]]; then
        cargo test --workspace >"$log" 2>&1 || status=$?
    else
        pids=()
        index=0
        while IFS=$'\t' read -r dir exe; do
            index=$((index + 1))
            (cd "$dir" && "$exe") >"$log.$index" 2>&1 &
            pids+=($!)
        done < <(binaries)
        for pid in "${pids[@]}"; do
            wait "$pid" || status=1
        done
        cat "$log".* >"$log"
        rm -f "$log".*
    fi
    failed=$(failed_tests "$log")
    if [[ $status -ne 0 ]]; then
        failed_runs=$((failed_runs + 1))
        # A run that failed without a failing test (a crash, a build error) counts too.
        [[ -n "$failed" ]] || failed="(run failed without a failing test: see $log)"
        printf '%s\n' "$failed" >>"$out/failures.txt"
    fi
    echo "run $run/$runs ($mode): $([[ $status -eq 0 ]] && echo ok || echo FAILED) in $(($(date +%s) - started)) s"
done

{
    echo "soak: $runs $mode run(s), $failed_runs failed"
    if [[ -s "$out/failures.txt" ]]; then
        echo "failures by test:"
        sort "$out/failures.txt" | uniq -c | sort -rn
    fi
} | tee "$out/tally.txt"
[[ $failed_runs -eq 0 ]]
