#!/usr/bin/env bash
# Times `lab up` and `lab down` of an N-node lab (default 100 nodes on one NAT network).
#   benches/up-down.sh [NODES] [ROUNDS]
# Run as root. Prints each round and the median; measures the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-100}
rounds=${2:-5}
cargo build --release -q
lab=target/release/lab
dir=$(mktemp -d)
name="bench-$nodes-$$"
trap '$lab down "$name" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
{
    echo "name = \"$name\""
    echo '[networks.lan]'
    echo 'subnet = "10.200.0.0/16"'
    echo 'nat = true'
    for i in $(seq 1 "$nodes"); do printf '[nodes.n%d]\nnetworks = ["lan"]\n' "$i"; done
} > "$dir/lab.toml"

ms() { echo $(( ($2 - $1) / 1000000 )); }
ups=(); downs=()
for r in $(seq 1 "$rounds"); do
    t0=$(date +%s%N); $lab up "$dir/lab.toml" >/dev/null 2>&1; t1=$(date +%s%N)
    $lab exec n1 ping -c1 -W2 "n$nodes" >/dev/null || { echo "round $r: n1 cannot ping n$nodes" >&2; exit 1; }
    t2=$(date +%s%N); $lab down "$name" >/dev/null 2>&1; t3=$(date +%s%N)
    ups+=("$(ms "$t0" "$t1")"); downs+=("$(ms "$t2" "$t3")")
    echo "round $r: up $(ms "$t0" "$t1") ms, down $(ms "$t2" "$t3") ms"
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
echo "$nodes nodes, $rounds rounds: median up $(median "${ups[@]}") ms, median down $(median "${downs[@]}") ms"
