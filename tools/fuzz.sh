#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang, ASan and UBSan in build-fuzz/, runs every
# input under tests/fuzz/regressions/<target>/ once, then fuzzes each target for a bounded time
# from a scratch copy of its seed corpus (tests/fuzz/corpus/<target>/ is never grown).
#
#   tools/fuzz.sh [seconds_per_target] [target...]     (default: 20 s, every target)
#   tools/fuzz.sh 60 wire record                       ("wire" or "fuzz_wire")
#
# Exits 1 when any target crashed, leaked, hit UB, timed out (-timeout=10) or ran out of memory
# (-rss_limit_mb=2048), after printing each failing input's path and the command that reproduces
# it; crash inputs are kept under build-fuzz/fuzz-artifacts/<target>/. Environment: JOBS (build
# parallelism, default 2), CHUNKFERRY_FUZZ_BUILD (build directory, default build-fuzz).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${CHUNKFERRY_FUZZ_BUILD:-$root/build-fuzz}
jobs=${JOBS:-2}
all_targets=(wire record pack_scan manifest manifest_delta index_run chunk_index record_table
             group_kv registry sync_action text)

seconds=20
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=()
for t in "$@"; do
  t=${t#fuzz_}
  if [[ ! " ${all_targets[*]} " =~ " $t " ]]; then
    echo "fuzz.sh: unknown target '$t' (known: ${all_targets[*]})" >&2
    exit 2
  fi
  targets+=("$t")
done
((${#targets[@]})) || targets=("${all_targets[@]}")

for tool in clang clang++ cmake ninja; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool not found (tools/install-deps.sh)" >&2; exit 2; }
done

echo "== configure $build"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCHUNKFERRY_FUZZ=ON -DCHUNKFERRY_BENCH=OFF -DCHUNKFERRY_WERROR=OFF >/dev/null
echo "== build ${targets[*]}"
ninja -C "$build" -j"$jobs" "${targets[@]/#/fuzz_}"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/chunkferry-fuzz.XXXXXX")
# The targets' own scratch files (tests/fuzz/fuzz_util.h), in memory when /dev/shm is there.
shm=$(mktemp -d /dev/shm/chunkferry-fuzz-run.XXXXXX 2>/dev/null || mktemp -d "$scratch/shm.XXXXXX")
export CHUNKFERRY_FUZZ_TMPDIR=$shm
trap 'rm -rf "$scratch" "$shm"' EXIT
artifacts_root=$build/fuzz-artifacts
failed=()
summary=()
common=(-timeout=10 -rss_limit_mb=2048)
# UBSan reports carry a stack trace, so a failure names file:line without a rerun.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  artifacts=$artifacts_root/$t
  mkdir -p "$artifacts"
  result=ok

  # Known crash inputs: each runs once and must pass.
  regressions=("$root/tests/fuzz/regressions/$t"/*)
  if [[ -e ${regressions[0]} ]]; then
    echo "== $t: ${#regressions[@]} regression input(s)"
    for input in "${regressions[@]}"; do
      if ! "$bin" "${common[@]}" "$input" >"$scratch/$t.regression.log" 2>&1; then
        echo "FAIL $t: regression input $input"
        grep -E "ERROR:|SUMMARY:|FUZZ_CHECK|#[0-9]+ 0x" "$scratch/$t.regression.log" | head -12 || true
        echo "  reproduce: $bin $input"
        result=regression
      fi
    done
  fi

  # Fuzzing from a scratch copy of the seeds.
  corpus=$scratch/$t/corpus
  mkdir -p "$corpus"
  if [[ -d $root/tests/fuzz/corpus/$t ]]; then cp -r "$root/tests/fuzz/corpus/$t/." "$corpus/"; fi
  log=$scratch/$t.log
  echo "== $t: fuzzing for ${seconds} s"
  rc=0
  started=$SECONDS
  # The outer timeout only catches a fuzzer that stops checking its own clock.
  timeout --kill-after=30 $((seconds + 120)) "$bin" "${common[@]}" -max_total_time="$seconds" \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || rc=$?
  elapsed=$((SECONDS - started))
  stats=$(grep -E "^#[0-9]+.*(DONE|cov:)" "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+" <<<"$stats" | tail -1 || true)
  if ((rc != 0)); then
    result=crash
    crash=$(grep -oE "(Test unit|artifact_prefix=.*; Test unit) written to [^ ]+" "$log" | tail -1 |
            sed 's/.*written to //' || true)
    echo "FAIL $t (exit $rc)"
    grep -E "ERROR:|SUMMARY:|FUZZ_CHECK|^ *#[0-9]+ 0x" "$log" | head -16 || true
    if [[ -n $crash ]]; then
      echo "  input: $crash"
      echo "  reproduce: $bin $crash"
      echo "  minimize: $bin -minimize_crash=1 -runs=10000 $crash"
    else
      echo "  log: tail of the fuzzer's output follows"
      tail -20 "$log"
    fi
  fi
  [[ $result == ok ]] || failed+=("$t")
  summary+=("$(printf '%-15s %-10s %4s s %10s execs %7s exec/s  %s' "$t" "$result" "$elapsed" \
    "${execs:-?}" "${speed:-?}" "${cov:-}")")
done

echo
echo "== summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]} (crash inputs under $artifacts_root)"
  exit 1
fi
echo "all targets passed"
