#!/usr/bin/env bash
# Scale, in one run: `lab up` and `lab down` of N idle nodes on one network for each N, next to
# the same network made by hand (benches/raw-network.sh) and, when it is installed, Mininet
# (LinuxBridge, no controller); then `lab exec NODE /bin/true` next to `nsenter -a`, and the
# memory a node costs. Prints a table of medians and ratios.
#   benches/scale.sh [ROUNDS] [N...]        default: 3 rounds of 20 100 250 1000
# Run as root, on a machine with nothing else running: it measures the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20 100 250 1000)
cargo build --release -q
lab=$PWD/target/release/lab
dir=$(mktemp -d)
prefix="rb$$"
name="scale-$$"
cleanup() {
    $lab down "$name" >/dev/null 2>&1 || true
    benches/raw-network.sh down "${sizes[-1]}" "$prefix" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
# The kernel frees network namespaces asynchronously (cleanup_net): let it finish, so one
# run's teardown is not billed to the next.
settle() { sleep "${SETTLE:-3}"; }

topology() {
    {
        echo "name = \"$name\""
        echo '[networks.lan]'
        echo 'subnet = "10.200.0.0/16"'
        for i in $(seq 1 "$1"); do printf '[nodes.n%d]\nnetworks = ["lan"]\n' "$i"; done
    } > "$dir/lab.toml"
}

mininet_py() {
    cat > "$dir/mn.py" <<PY
import sys, time
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import SingleSwitchTopo
n = int(sys.argv[1])
t0 = time.time()
net = Mininet(topo=SingleSwitchTopo(n), switch=LinuxBridge, controller=None)
net.start()
t1 = time.time()
net.stop()
t2 = time.time()
print(int((t1 - t0) * 1000), int((t2 - t1) * 1000))
PY
}
have_mininet=false
if python3 -c 'import mininet' 2>/dev/null; then have_mininet=true; mininet_py; fi

declare -A UP DOWN RAWUP RAWDOWN MNUP MNDOWN
for n in "${sizes[@]}"; do
    topology "$n"
    ups=() downs=() rups=() rdowns=() mups=() mdowns=()
    for r in $(seq 1 "$rounds"); do
        settle
        t0=$(now); $lab up "$dir/lab.toml" >/dev/null 2>&1; t1=$(now)
        $lab exec n1 ping -c1 -W2 "n$n" >/dev/null || { echo "$n nodes: n1 cannot ping n$n" >&2; exit 1; }
        t2=$(now); $lab down "$name" >/dev/null 2>&1; t3=$(now)
        ups+=("$(ms "$t0" "$t1")") downs+=("$(ms "$t2" "$t3")")
        settle
        t0=$(now); benches/raw-network.sh up "$n" "$prefix"; t1=$(now)
        benches/raw-network.sh down "$n" "$prefix"; t2=$(now)
        rups+=("$(ms "$t0" "$t1")") rdowns+=("$(ms "$t1" "$t2")")
        if $have_mininet && [ "$n" -le 250 ]; then
            settle
            read -r mu md < <(python3 "$dir/mn.py" "$n" 2>/dev/null | tail -1)
            mups+=("$mu") mdowns+=("$md")
        fi
        echo "$n nodes, round $r: lab up ${ups[-1]} ms, down ${downs[-1]} ms; raw ${rups[-1]} / ${rdowns[-1]} ms" >&2
    done
    UP[$n]=$(median "${ups[@]}") DOWN[$n]=$(median "${downs[@]}")
    RAWUP[$n]=$(median "${rups[@]}") RAWDOWN[$n]=$(median "${rdowns[@]}")
    if [ ${#mups[@]} -gt 0 ]; then MNUP[$n]=$(median "${mups[@]}") MNDOWN[$n]=$(median "${mdowns[@]}"); fi
done

# exec latency and memory, on a 100-node lab.
topology 100
settle
before=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
$lab up "$dir/lab.toml" >/dev/null 2>&1
after=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
pid=$($lab inspect "$name" n1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["labs"][0]["nodes"][0]["pid"])')
runs=200
t0=$(now); for _ in $(seq $runs); do $lab exec --lab "$name" n1 /bin/true; done; t1=$(now)
for _ in $(seq $runs); do nsenter -t "$pid" -a /bin/true; done; t2=$(now)
exec_us=$(( (t1 - t0) / runs / 1000 )) nsenter_us=$(( (t2 - t1) / runs / 1000 ))
# PSS of each node's monitor and init (smaps_rollup), averaged over the nodes.
pss=0
for p in $($lab ps --json | python3 -c "
import json,sys
for l in json.load(sys.stdin)['labs']:
    if l['name'] == '$name':
        for n in l['nodes']: print(n['pid'])"); do
    for q in "$p" "$(awk '{print $4}' "/proc/$p/stat")"; do
        pss=$(( pss + $(awk '/^Pss:/ {print $2}' "/proc/$q/smaps_rollup" 2>/dev/null || echo 0) ))
    done
done
$lab down "$name" >/dev/null 2>&1

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r); medians of $rounds rounds"
echo
echo "| N | lab up | lab down | raw iproute2 up / down | lab up ÷ raw up | Mininet up / down |"
echo "|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
    mn="-"
    [ -n "${MNUP[$n]:-}" ] && mn="${MNUP[$n]} / ${MNDOWN[$n]} ms"
    echo "| $n | ${UP[$n]} ms | ${DOWN[$n]} ms | ${RAWUP[$n]} / ${RAWDOWN[$n]} ms | $(ratio "${UP[$n]}" "${RAWUP[$n]}") | $mn |"
done
first=${sizes[0]} last=${sizes[-1]}
echo
echo "up($last) / up($first): $(ratio "${UP[$last]}" "${UP[$first]}") for $(ratio "$last" "$first")x the nodes"
echo "lab exec /bin/true: $exec_us us; nsenter -a /bin/true: $nsenter_us us; ratio $(ratio "$exec_us" "$nsenter_us")"
echo "per node: $(( (before - after) / 100 )) KiB of MemAvailable, $(( pss / 100 )) KiB PSS (monitor + init)"
