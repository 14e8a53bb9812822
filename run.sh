#!/usr/bin/env bash
# The two commands of the README, on a fresh Debian machine as root:
#   ./run.sh demo   installs what is missing, builds, trains a toy translation model and translates with it
#   ./run.sh test   installs what is missing, builds, runs every suite (unit, MPI, sanitizers, fuzzing, and the
#                   clean-room suite that tries the setup on a brand-new Debian 12 root) and ends with one line
#                   "N passed, N failed" totalling the test cases of all suites
# Also: ./run.sh build (what both start with: install and build), ./run.sh bench [CONFIG...] (the speed
# comparison against PyTorch, needs python3-torch).
set -euo pipefail
cd "$(dirname "$0")"

# dpkg-dev: meson asks its dpkg-architecture for Debian's multiarch libdir; without it `meson install` puts the
# library and gradformer.pc in /usr/local/lib64, where neither the loader nor pkg-config looks.
build_packages=(g++ dpkg-dev meson ninja-build pkg-config libdnnl-dev libopenblas-dev libfmt-dev doctest-dev
                nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin trans-de-en libsentencepiece-dev)
test_packages=(clang libclang-rt-14-dev libomp-14-dev mmdebstrap sentencepiece)

# quietly STEP COMMAND...: runs COMMAND with its output kept aside; if it fails, says which step failed, shows
# the output's last lines (and meson's log, for a failed meson call), and exits with its status.
quietly() {
  local step=$1 log status=0
  shift
  log=$(mktemp)
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "run.sh: $step failed (exit status $status); its last lines:" >&2
    tail -n 40 "$log" >&2
    rm -f "$log"
    exit "$status"
  fi
  rm -f "$log"
}

# loudly STEP COMMAND...: for steps whose output the user should watch (the build, a suite's run); on failure says
# which step failed.
loudly() {
  local step=$1 status=0
  shift
  "$@" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "run.sh: $step failed (exit status $status): its error is above" >&2
    exit "$status"
  fi
}

install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh: installing ${missing[*]}"
    quietly "apt-get update" apt-get update -q
    quietly "apt-get install ${missing[*]}" \
      env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# configure DIR [meson options...]: set up DIR once, reconfigure when the options change.
configure() {
  local dir=$1 status=0
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >"$dir/run.sh-configure.log" 2>&1 || status=$?
  else
    mkdir -p "$dir"
    meson setup "$dir" "$@" >"$dir/run.sh-configure.log" 2>&1 || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    echo "run.sh: meson setup of $dir failed; its output:" >&2
    tail -n 30 "$dir/run.sh-configure.log" >&2
    if [ -f "$dir/meson-logs/meson-log.txt" ]; then
      echo "run.sh: the end of $dir/meson-logs/meson-log.txt:" >&2
      tail -n 20 "$dir/meson-logs/meson-log.txt" >&2
    fi
    exit "$status"
  fi
}

build_release() {
  install_missing "${build_packages[@]}"
  configure build --buildtype=release
  loudly "the build (ninja -C build)" ninja -C build
}

# Runs a doctest binary, echoes its output, and adds its test-case counts to the totals.
passed=0
failed=0
run_suite() {
  local name=$1 log
  shift
  log=$(mktemp)
  echo "== suite: $name"
  set +e
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  set -e
  local line suite_failed
  line=$(grep -E '^\[doctest\] test cases:' "$log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    failed=$((failed + 1))  # the suite died before doctest could report
    echo "run.sh: suite $name exited with $status before reporting"
  else
    suite_failed=$(sed -E 's/.*\| *([0-9]+) failed.*/\1/' <<<"$line")
    passed=$((passed + $(sed -E 's/.*\| *([0-9]+) passed.*/\1/' <<<"$line")))
    failed=$((failed + suite_failed))
    if [ "$status" -ne 0 ] && [ "$suite_failed" -eq 0 ]; then
      failed=$((failed + 1))  # it failed after the summary: a leak report, say
      echo "run.sh: suite $name exited with $status after its tests passed"
    fi
  fi
  rm -f "$log"
}

# libFuzzer targets (tests/fuzz/), built with clang, each run for a bounded number of inputs from a scratch copy
# of its committed seeds; each target counts as one test case. FUZZ_RUNS sets the count (default 20000).
run_fuzzers() {
  CXX=clang++ CC=clang configure build-fuzz --buildtype=plain -Dcpp_args=-O1 -Db_sanitize=address,undefined \
    -Db_lundef=false -Dfuzzing=true -Dbuild_tests=false -Dbuild_examples=false -Dnative=false
  loudly "the fuzz build" ninja -C build-fuzz tests/fuzz/fuzz_safetensors tests/fuzz/fuzz_vocabulary tests/fuzz/fuzz_bpe tests/fuzz/fuzz_tsv
  local target scratch
  for target in safetensors vocabulary bpe tsv; do
    echo "== fuzz: $target"
    scratch=$(mktemp -d)
    cp tests/fuzz/corpus/"$target"/* "$scratch"/
    if ./build-fuzz/tests/fuzz/fuzz_"$target" -runs="${FUZZ_RUNS:-20000}" -max_len=4096 -timeout=10 \
        -print_final_stats=1 "$scratch" 2>&1 | tail -n 12; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      echo "run.sh: fuzz target $target found a failure"
    fi
    rm -rf "$scratch"
  done
}

# The clean-room suite (tests/cleanroom/run.sh): the README's setup, a training run, a translation and the
# installed library, tried inside a fresh Debian 12 root. Its cases count in the totals; CLEAN_ROOM=0 skips it.
run_clean_room() {
  if [ "${CLEAN_ROOM:-1}" = 0 ]; then
    echo "run.sh: skipping the clean-room suite (CLEAN_ROOM=0)"
    return
  fi
  echo "== suite: clean-room"
  local log line
  log=$(mktemp)
  set +e
  tests/cleanroom/run.sh 2>&1 | tee "$log"
  set -e
  line=$(grep -E '^clean-room: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    failed=$((failed + 1))
    echo "run.sh: the clean-room suite ended before reporting"
  else
    passed=$((passed + $(sed -E 's/^clean-room: ([0-9]+) passed.*/\1/' <<<"$line")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")))
  fi
  rm -f "$log"
}

case "${1:-}" in
  build)
    build_release
    ;;
  demo)
    build_release
    # Train transformer-tiny on the synthetic English->German grammar task for 4 minutes (the test BLEU, beam 4,
    # is printed at the end), then translate held-out sentences and draw the attention of the first one.
    # No dropout: the generated task has no noise to overfit to in 4 minutes, and dropout 0.1 needs about
    # twice the steps for the same validation BLEU (docs/study.md, "The zoo side by side"). A rerun replaces
    # the previous demo's checkpoints (--overwrite).
    out=runs/demo
    ./build/examples/gradformer-train --task grammar --model transformer-tiny --out "$out" --overwrite \
      --max-minutes 4 --max-tokens 2048 --warmup 300 --valid-every 400 --dropout 0
    ./build/examples/gradformer-train --task grammar --write-data "$out/data" >/dev/null
    head -n 5 "$out/data/test.tsv" | cut -f 1 >"$out/sources.txt"
    head -n 5 "$out/data/test.tsv" | cut -f 2 >"$out/references.txt"
    ./build/examples/gradformer-translate --checkpoint "$out/best.safetensors" --input "$out/sources.txt" \
      --beam 4 --attention-svg "$out/attention.svg" >"$out/translations.txt"
    paste -d '\n' "$out/sources.txt" "$out/translations.txt" | sed 'n;s/^/  -> /'
    echo "attention of the first sentence: $out/attention.svg; loss curve: $out/loss.svg"
    ;;
  test)
    build_release
    install_missing "${test_packages[@]}"
    run_suite unit ./build/tests/gradformer-tests --no-version
    # Data parallel on Open MPI: the collective cases on 2 ranks, then the cases that launch gradformer-train.
    if [ -x build/tests/gradformer-mpi-tests ]; then
      # Open MPI gives the ranks a terminal, so doctest would colour its summary line.
      run_suite mpi mpirun --allow-run-as-root --oversubscribe -np 2 ./build/tests/gradformer-mpi-tests --no-version \
        --no-colors
      run_suite mpi-launch ./build/tests/gradformer-mpi-tests --no-version
    else
      echo "run.sh: skipping the MPI suites: this build has no MPI (meson found no libopenmpi-dev; -Dmpi=enabled)"
    fi
    # AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer over the same suites. oneDNN's JIT and
    # OpenMP's runtime are not instrumented; tests/sanitizer.supp names the leaks of theirs that are not ours.
    # -O1 without debug info keeps this second full build short; the reports still name functions.
    configure build-sanitize --buildtype=plain -Dcpp_args=-O1 -Db_sanitize=address,undefined -Db_lundef=false \
      -Dbuild_examples=false -Dnative=false
    loudly "the sanitizer build" ninja -C build-sanitize tests/gradformer-tests
    # Caching off: a use after free of tensor storage must reach AddressSanitizer, not a cached block.
    GRADFORMER_CACHING_ALLOCATOR=0 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 LSAN_OPTIONS=suppressions=$PWD/tests/sanitizer.supp \
      run_suite sanitize ./build-sanitize/tests/gradformer-tests --no-version
    run_fuzzers
    run_clean_room
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    ;;
  bench)
    build_release
    shift
    /usr/bin/python3 -c 'import torch' 2>/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch >/dev/null
    ../shared/bench/compare.sh build/examples/gradformer-bench "$@"
    ;;
  *)
    echo "usage: ./run.sh demo | test | build | bench [toy|small|base...]" >&2
    exit 2
    ;;
esac
