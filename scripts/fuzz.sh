#!/usr/bin/env bash
# Fuzzes Ferry's parsers of outside data with cargo-fuzz (libFuzzer), one target after another.
#
#   scripts/fuzz.sh                      every target, 120 s each
#   scripts/fuzz.sh records 600          one target for 10 minutes
#   scripts/fuzz.sh list                 the targets
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly; cargo install cargo-fuzz`).
# Not part of CI or scripts/test.sh: the targets live in fuzz/, outside the workspace.
# Corpus: fuzz/corpus/<target> (grows; seeded from fuzz/seeds/<target>); a crash lands in
# fuzz/artifacts/<target>/ and the script stops with its path. Reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-…
# then turn it into a regression test in the crate that owns the code (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(records csv_mapping webhook records_api tryton_answers vendure_answers)
target=${1:-all}
seconds=${2:-120}

if [ "$target" = list ]; then
    printf '%s\n' "${TARGETS[@]}"
    exit 0
fi
if [ "$target" = all ]; then
    run=("${TARGETS[@]}")
elif printf '%s\n' "${TARGETS[@]}" | grep -qx "$target"; then
    run=("$target")
else
    echo "unknown target $target; targets: ${TARGETS[*]}" >&2
    exit 2
fi

for t in "${run[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    seeds=()
    if [ -d "fuzz/seeds/$t" ]; then seeds=("fuzz/seeds/$t"); fi
    echo "[fuzz] $t for ${seconds}s"
    # -timeout: an input taking over 10 s counts as a hang; -rss_limit_mb: one input may not eat the machine.
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
