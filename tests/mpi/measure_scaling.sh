#!/bin/sh
# Data-parallel scaling over a slow network, measured: two network namespaces joined by a veth pair stand for two
# machines, the link shaped with tc's token bucket filter to each rate asked for, and gradformer-bench run as
# 2 ranks x 1 thread (one per namespace, Open MPI over TCP only) with and without overlapping the allreduce,
# against 1 rank x 1 thread. Prints a table of tokens/s and scaling efficiency (2-rank tokens/s over twice the
# 1-rank tokens/s: the bench's global batch is fixed, so ideal is 2x).
#
# Run by hand as root (it creates and deletes namespaces, a veth pair and qdiscs; not part of ./run.sh test):
#   tests/mpi/measure_scaling.sh [--configs "small base"] [--rates-mbit "1000 10000"] [--bucket-mb "25 4"]
#                                [--steps N] [--build DIR]
# Each rate runs once without overlap (the first bucket size) and once with overlap per bucket size: a model
# smaller than one bucket (small's 24 MiB at DDP's default of 25) has nothing to overlap, its one bucket being
# ready only when backward ends.
# Traffic stays on 10.78.0.0/24 inside the two namespaces; everything is removed on exit, also on failure.
# Not provided: idle cores. Two ranks on one machine share its cores, so the figures are only as steady as
# the machine is idle.
set -eu

configs="small"
rates_mbit="1000 10000"
bucket_mbs="25 4"
steps=5
build="$(cd "$(dirname "$0")/../.." && pwd)/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --configs) configs=$2; shift 2 ;;
    --rates-mbit) rates_mbit=$2; shift 2 ;;
    --bucket-mb) bucket_mbs=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) echo "measure_scaling.sh: unknown argument '$1' (see the comment at the top)" >&2; exit 2 ;;
  esac
done
bench="$build/examples/gradformer-bench"
[ -x "$bench" ] || { echo "measure_scaling.sh: $bench is missing: build it first (ninja -C build examples/gradformer-bench)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "measure_scaling.sh: needs root (ip netns, tc)" >&2; exit 1; }

ns1=gfscale1 ns2=gfscale2 addr1=10.78.0.1 addr2=10.78.0.2
if ip netns list | grep -qE "^($ns1|$ns2)( |\$)"; then
  echo "measure_scaling.sh: namespace $ns1 or $ns2 exists already (another run?); not touching it" >&2
  exit 1
fi
work=$(mktemp -d /tmp/gradformer-scaling.XXXXXX)
cleanup() {
  ip netns del "$ns1" 2>/dev/null || true
  ip netns del "$ns2" 2>/dev/null || true  # the veth pair goes with its namespaces
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ip netns add "$ns1"; ip netns add "$ns2"
ip link add gfscale-a type veth peer name gfscale-b
ip link set gfscale-a netns "$ns1"; ip link set gfscale-b netns "$ns2"
ip -n "$ns1" addr add "$addr1/24" dev gfscale-a; ip -n "$ns2" addr add "$addr2/24" dev gfscale-b
for ns in "$ns1" "$ns2"; do ip -n "$ns" link set lo up; done
ip -n "$ns1" link set gfscale-a up; ip -n "$ns2" link set gfscale-b up

# Open MPI starts the remote rank through this instead of ssh: it runs the command in the namespace owning HOST.
cat > "$work/ns-agent.sh" <<SH
#!/bin/sh
host=\$1; shift
case "\$host" in $addr1) ns=$ns1 ;; $addr2) ns=$ns2 ;; *) exit 1 ;; esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
SH
chmod +x "$work/ns-agent.sh"
printf '%s slots=1\n%s slots=1\n' "$addr1" "$addr2" > "$work/hosts.txt"

# Both directions shaped: each end's egress. The bucket holds 4 ms of traffic at the rate (tbf needs at least
# one timer tick's worth).
shape() {
  for end in "$ns1 gfscale-a" "$ns2 gfscale-b"; do
    set -- $end
    ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "${rate}mbit" burst "$((rate * 1000 / 8 * 4))" latency 100ms
  done
}

field() {  # field NAME LINE: the value of NAME=... in LINE
  printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# --bind-to none: Open MPI binds each host's first rank to that host's core 0, and the two "hosts" here are one
# machine, so both ranks would share one core (measured: 2 ranks on small took 620 ms of compute a step for half
# the batch each, against 560 ms for the whole batch in one process).
run_two_ranks() {  # run_two_ranks CONFIG "BENCH FLAGS": prints the bench's train and allreduce lines
  ip netns exec "$ns1" mpirun --allow-run-as-root -np 2 --bind-to none --hostfile "$work/hosts.txt" \
      --mca plm_rsh_agent "$work/ns-agent.sh" --mca btl tcp,self \
      --mca btl_tcp_if_include 10.78.0.0/24 --mca oob_tcp_if_include 10.78.0.0/24 \
      "$bench" --config "$1" --threads 1 --steps "$steps" $2 | grep -E '^(train|allreduce) '
}

echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min), $(nproc) cores; $steps timed steps per run"
table="| config | link | allreduce | 1 rank x 1 thread | 2 ranks x 1 thread | allreduce wait per step | scaling efficiency |
| --- | --- | --- | --- | --- | --- | --- |"
for config in $configs; do
  one=$("$bench" --config "$config" --threads 1 --steps "$steps" | grep '^train ')
  one_tok=$(field tgt_tok_per_s "$one")
  echo "1 rank:  $one"
  for rate in $rates_mbit; do
    shape
    modes="no-overlap:${bucket_mbs%% *}"
    for mb in $bucket_mbs; do modes="$modes overlap:$mb"; done
    for mode in $modes; do
      mb=${mode#*:}
      flags="--bucket-mb $mb"; [ "${mode%%:*}" = no-overlap ] && flags="$flags --no-overlap"
      out=$(run_two_ranks "$config" "$flags")
      echo "2 ranks, $rate Mbit/s, $flags: $(printf '%s' "$out" | tr '\n' ' ')"
      train=$(printf '%s\n' "$out" | grep '^train ')
      reduce=$(printf '%s\n' "$out" | grep '^allreduce ')
      two_tok=$(field tgt_tok_per_s "$train")
      wait_ms=$(field ms_per_step "$reduce")
      buckets=$(field buckets "$reduce")
      efficiency=$(awk -v two="$two_tok" -v one="$one_tok" 'BEGIN { printf "%.0f%%", 100 * two / (2 * one) }')
      table="$table
| $config | $rate Mbit/s | ${mode%%:*}, cap $mb MiB: $buckets bucket(s) | $one_tok tok/s | $two_tok tok/s | $wait_ms ms | $efficiency |"
    done
  done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%s\n' "$table"
