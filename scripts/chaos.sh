#!/usr/bin/env bash
# A long fault-injection run, repeatable from its seed:
#
#   scripts/chaos.sh --minutes 10 --seed 42 [--fault KIND] [--out DIR] [any kvchaos option]
#
# Builds the release binaries, then runs kvchaos with mixed faults by default (kill -9,
# SIGSTOP, partitions and one-way cuts, a full disk, a slow disk) against a primary and two
# replicas for the given time. Exit status is kvchaos's: 0 valid, 1 a violation, 2 bad
# arguments or a failed start. The report, history, faults and the nodes' logs are kept in
# target/chaos/<seed>/ unless --out says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
seed=$(date +%s)
fault=mixed
out=
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
        --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
        --fault) fault="${2:?--fault needs a kind}"; shift 2 ;;
        --out) out="${2:?--out needs a folder}"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) rest+=("$1"); shift ;;
    esac
done
case "$minutes" in
    ''|*[!0-9]*) echo "chaos.sh: --minutes must be a whole number, not '$minutes'" >&2; exit 2 ;;
esac

cargo build --release --quiet --bin kvnode --bin kvchaos
echo "chaos.sh: ${minutes} min of '${fault}' faults, seed ${seed}" >&2
exec target/release/kvchaos --fault "$fault" --duration $((minutes * 60)) --seed "$seed" \
    --out "${out:-target/chaos/$seed}" "${rest[@]}"
