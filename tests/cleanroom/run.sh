#!/usr/bin/env bash
# The clean-room suite: what a new user gets on a brand-new Debian 12 machine. It makes a fresh bookworm root with
# mmdebstrap (the host's apt sources, only apt inside), puts the committed tree in it (git archive HEAD), and
# in a chroot runs each case below as that user would. A case that fails prints its last lines; the suite ends
# with "clean-room: N passed, N failed". The root (and the /proc mounted in it) is removed on every exit.
# Run as root: tests/cleanroom/run.sh. CLEAN_ROOM_KEEP=1 keeps the root for a look (still unmounted).
set -uo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
root=$(mktemp -d /var/tmp/gradformer-clean-room.XXXXXX)
logs=$(mktemp -d)

cleanup() {
  if mountpoint -q "$root/proc"; then
    umount "$root/proc" || umount -l "$root/proc"
  fi
  if mountpoint -q "$root/proc"; then
    echo "clean-room: $root/proc is still mounted; not removing $root" >&2
  elif [ "${CLEAN_ROOM_KEEP:-0}" = 1 ]; then
    echo "clean-room: kept $root"
  else
    rm -rf "$root"
  fi
  rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# case NAME COMMAND...: one test case; its output goes to a log, shown (the last 40 lines) only on failure.
case_() {
  local name=$1 start status=0
  shift
  start=$(date +%s)
  "$@" >"$logs/$name.log" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    echo "clean-room: $name: ok ($(($(date +%s) - start)) s)"
  else
    failed=$((failed + 1))
    echo "clean-room: $name: FAILED (exit status $status, $(($(date +%s) - start)) s); its last lines:"
    tail -n 40 "$logs/$name.log" | sed 's/^/  | /'
  fi
  return "$status"
}

# in_root COMMANDS: a bash script run inside the root, as root, in the tree's copy.
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 \
    /bin/bash -euo pipefail -c "cd /root/gradformer && $1"
}

bootstrap() {
  mmdebstrap --variant=apt --quiet bookworm "$root" &&
    mkdir -p "$root/root/gradformer" &&
    git archive HEAD | tar -x -C "$root/root/gradformer" &&
    mount -t proc proc "$root/proc"
}

# The README's first step, exactly as a user types it (./run.sh build is what both README commands start with).
setup() { in_root './run.sh build'; }

# A short training run and a translation with its checkpoint, through the installed-by-setup programs.
train() {
  in_root './build/examples/gradformer-train --task copy --model transformer-tiny --max-steps 40 --valid-every 20 \
            --max-tokens 512 --out /root/run --test-beam 1'
}
translate() {
  in_root './build/examples/gradformer-train --task copy --write-data /root/data &&
           head -n 3 /root/data/test.tsv | cut -f 1 >/root/sources.txt &&
           ./build/examples/gradformer-translate --checkpoint /root/run/last.safetensors --input /root/sources.txt \
             --output /root/translations.txt &&
           test "$(wc -l </root/translations.txt)" -eq 3'
}

# meson install, then a program of the user's built with nothing but pkg-config's flags.
installed_library() {
  in_root 'meson install -C build --quiet && ldconfig &&
           mkdir -p /root/user && cp tests/consumer/consumer.cpp /root/user/ && cd /root/user &&
           g++ -std=c++20 consumer.cpp -o consumer $(pkg-config --cflags --libs gradformer) && ./consumer'
}

# A user's meson project with gradformer as a subproject (a copy of the tree in subprojects/gradformer).
subproject() {
  in_root 'mkdir -p /root/sub/subprojects && cp tests/consumer/meson.build tests/consumer/consumer.cpp /root/sub/ &&
           mkdir /root/sub/subprojects/gradformer && tar -c --exclude=./build . | tar -x -C /root/sub/subprojects/gradformer &&
           cd /root/sub &&
           meson setup build --force-fallback-for=gradformer && ninja -C build && ./build/consumer'
}

# run.sh never fails silently: a broken meson.build and a compile error each stop it with the step named and the
# tool's own error shown (in a copy of the tree, so the real build stays as it is).
failures_reported() {
  in_root 'rm -rf /root/broken && mkdir /root/broken && tar -c --exclude=./build . | tar -x -C /root/broken &&
           cd /root/broken && cp meson.build meson.build.good && echo "this is not meson(" >>meson.build &&
           if ./run.sh build >/root/broken.log 2>&1; then echo "run.sh passed over a broken meson.build"; exit 1; fi &&
           grep -q "run.sh: meson setup of build failed" /root/broken.log && grep -q "ERROR" /root/broken.log &&
           mv meson.build.good meson.build && rm -rf build && echo "#error a compile error planted by the test" >>autograd/tensor.h &&
           if ./run.sh build >/root/broken.log 2>&1; then echo "run.sh passed over a compile error"; exit 1; fi &&
           grep -q "run.sh: the build (ninja -C build) failed" /root/broken.log &&
           grep -q "a compile error planted by the test" /root/broken.log'
}

echo "clean-room: a fresh Debian 12 root in $root"
# A case that cannot run because one it needs failed counts as failed too.
not_run() {
  failed=$((failed + $1))
  echo "clean-room: $1 more case(s) not run: they need the one that failed"
}
if ! case_ bootstrap bootstrap; then
  not_run 6
elif ! case_ setup setup; then
  not_run 5
else
  if case_ train train; then case_ translate translate; else not_run 1; fi
  case_ installed-library installed_library
  case_ subproject subproject
  case_ failures-reported failures_reported
fi
echo "clean-room: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
