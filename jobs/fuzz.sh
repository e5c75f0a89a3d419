#!/usr/bin/env bash
# Fuzzes the pure input paths for a time budget: every target in fuzz/fuzz_targets/, one
# after the other (the command decoder, the HTTP request path).
#
# Usage: jobs/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  fuzzing time of each target, build not counted [default: 60]
#   TARGET              the targets to run [default: every fuzz/fuzz_targets/*.rs]
#   e.g. jobs/fuzz.sh 120            # both targets, two minutes each
#        jobs/fuzz.sh 600 http       # ten minutes on the HTTP path
#
# Needs cargo-fuzz (installed from crates.io when missing) and a C++ compiler (libFuzzer is
# built from source). Runs on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass
# its -Z flags (AddressSanitizer, coverage instrumentation).
#
# Corpus: the small seeds in fuzz/corpus/TARGET/ are only read; what the fuzzer learns goes
# to target/fuzz-corpus/TARGET/ (untracked, kept between runs). An input slower than 5 s
# counts as a finding (a hang).
#
# On a crash: libFuzzer leaves the input in fuzz/artifacts/TARGET/, this script minimizes it
# with `cargo fuzz tmin` and prints the replay command; it carries on with the next target
# and exits 1 at the end. Replay: cargo fuzz run TARGET fuzz/artifacts/TARGET/FILE.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for file in fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$file" .rs)")
    done
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

failed=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    mkdir -p "target/fuzz-corpus/$target" "fuzz/artifacts/$target"
    marker=$(mktemp)
    if cargo fuzz run "$target" "target/fuzz-corpus/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=5 -print_final_stats=1; then
        echo "== $target: no crash in ${seconds}s"
    else
        failed+=("$target")
        find "fuzz/artifacts/$target" -type f -newer "$marker" ! -name 'minimized-*' |
            while read -r artifact; do
                echo "== $target: minimizing $artifact"
                cargo fuzz tmin --runs 20000 "$target" "$artifact" || true
            done
        echo "== $target: FAILED; inputs in fuzz/artifacts/$target/:"
        ls -l "fuzz/artifacts/$target/"
    fi
    rm -f "$marker"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== crashes in: ${failed[*]}"
    exit 1
fi
echo "== every target ran ${seconds}s without a crash: ${targets[*]}"
