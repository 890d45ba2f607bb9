#!/usr/bin/env bash
# Run every fuzz target (or those named) for SECONDS each (default 600):
#   fuzz/run.sh [--dev] [SECONDS] [TARGET...]
# --dev builds the targets without optimizations: half the build time (190 s against 364 s on the
# 2-core machine), slower runs; for a smoke run that they build and run (CI), not for finding bugs.
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain; where there is only the
# stable one, it is run as nightly with RUSTC_BOOTSTRAP=1. New inputs go to fuzz/work/TARGET (not
# committed), seeded from the committed fuzz/corpus/TARGET; a crash is written to
# fuzz/artifacts/TARGET/ and fails the script: copy it to fuzz/regressions/TARGET/ once fixed, and
# tests/library/fuzz_inputs.rs replays it from then on. Inputs are capped at 8 KB, memory at 2 GB and one
# input at 10 s (an out-of-memory abort or a hang counts as a crash). Every target runs even when
# one crashes; the script fails at the end if any crashed, or did not run to its end (each
# target's output is in fuzz/work/TARGET.log).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(-O)
if [ "${1:-}" = "--dev" ]; then
    profile=(-D)
    shift
fi
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npy csv checkpoint bench_results tune_cache history job_spec)

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
"${fuzz[@]}" build "${profile[@]}"
failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t"
    echo "fuzz $t for ${secs}s"
    log="fuzz/work/$t.log"
    status=0
    "${fuzz[@]}" run "${profile[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^(stat::|==|SUMMARY|Done|INFO: seed)|panicked|ERROR|Crash|crash-|oom-|timeout-" "$log" || true
    if compgen -G "fuzz/artifacts/$t/*" >/dev/null; then
        echo "fuzz $t: crashes in fuzz/artifacts/$t/" >&2
        failed+=("$t")
    elif [ "$status" -ne 0 ] || ! grep -q "^Done " "$log"; then
        # It did not run to its end: it failed to build, start or read its corpus.
        echo "fuzz $t: did not run (exit $status); the end of $log:" >&2
        tail -n 20 "$log" >&2
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed or did not run: ${failed[*]}" >&2
    exit 1
fi
echo "no crashes"
