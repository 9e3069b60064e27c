#!/usr/bin/env bash
# The network of an N-node lab made by hand with iproute2, the baseline lab's bring-up is
# measured against (benches/scale.sh): one bridge with an address, and per node a named
# network namespace with a veth pair on the bridge, an address, lo up and a default route.
# No processes, cgroups, mounts or sandboxes: the network alone.
#   benches/raw-network.sh up N PREFIX      makes it (in one `ip -batch` per namespace kind)
#   benches/raw-network.sh down N PREFIX    removes it
# Run as root. Touches only objects named PREFIX*.
set -euo pipefail
action=$1 nodes=$2 prefix=$3
bridge="${prefix}br"
case $action in
up)
    ip link add "$bridge" type bridge
    ip addr add 10.201.0.1/16 dev "$bridge"
    ip link set "$bridge" up
    # Namespaces first (ip -batch: one process for them all), then the links into them.
    for i in $(seq 1 "$nodes"); do echo "netns add ${prefix}$i"; done | ip -batch -
    for i in $(seq 1 "$nodes"); do
        echo "link add ${prefix}h$i type veth peer name eth0 netns ${prefix}$i"
        echo "link set ${prefix}h$i master $bridge up"
    done | ip -batch -
    for i in $(seq 1 "$nodes"); do
        printf 'addr add 10.201.%d.%d/16 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 10.201.0.1\n' \
            $((i / 250)) $((i % 250 + 2)) | ip -n "${prefix}$i" -batch -
    done
    ;;
down)
    for i in $(seq 1 "$nodes"); do echo "netns del ${prefix}$i"; done | ip -batch - 2>/dev/null || true
    ip link del "$bridge" 2>/dev/null || true
    ;;
*)
    echo "usage: $0 up|down N PREFIX" >&2
    exit 2
    ;;
esac
