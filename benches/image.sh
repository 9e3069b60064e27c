#!/usr/bin/env bash
# Images, measured (not a test): 
#   1. `lab up` of N nodes (default 100) from one image against N host-rootfs nodes;
#   2. `lab image pull` of a ~50 MB image (busybox and 48 MB of incompressible data, gzip)
#      from a docker-registry on loopback against `skopeo copy` of it to an OCI layout.
#   benches/image.sh [NODES] [ROUNDS]
# Run as root, with docker-registry and skopeo installed (scripts/install-deps). Prints each
# round and the medians; measures the release build. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-100}
rounds=${2:-3}
cargo build --release -q
lab=$PWD/target/release/lab
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
image="127.0.0.1:$port/bench/fifty:$$"
cleanup() {
    for l in "bench-img-$$" "bench-host-$$"; do $lab down "$l" >/dev/null 2>&1 || true; done
    $lab image rm "$image" >/dev/null 2>&1 || true
    [ -n "${registry:-}" ] && kill "$registry" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# The image: an OCI layout written here, pushed to a registry of our own.
python3 - "$dir/layout" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
d = sys.argv[1]; os.makedirs(d + "/blobs/sha256")
def put(b):
    h = hashlib.sha256(b).hexdigest(); open(f"{d}/blobs/sha256/{h}", "wb").write(b); return "sha256:" + h
def layer(add):
    buf = io.BytesIO(); t = tarfile.open(fileobj=buf, mode="w"); add(t); t.close(); return buf.getvalue()
def base(t):
    t.add("/bin/busybox", arcname="bin/busybox")
    for a in ["sh", "sleep", "ping", "cat"]:
        i = tarfile.TarInfo("bin/" + a); i.type = tarfile.SYMTYPE; i.linkname = "busybox"; t.addfile(i)
def data(t):
    blob = os.urandom(48 << 20); i = tarfile.TarInfo("data/blob"); i.size = len(blob); t.addfile(i, io.BytesIO(blob))
tars = [layer(base), layer(data)]
descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gzip.compress(t, 1)), "size": len(gzip.compress(t, 1))} for t in tars]
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]}}).encode()
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
                  "layers": descs}).encode()
open(d + "/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": put(man), "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "fifty"}}]}))
open(d + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$dir/registry" "$port" > "$dir/registry.yml"
docker-registry serve "$dir/registry.yml" >/dev/null 2>&1 &
registry=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$dir/layout:fifty" "docker://$image"

ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
pulls=(); copies=()
for r in $(seq 1 "$rounds"); do
    $lab image rm "$image" >/dev/null 2>&1 || true
    rm -rf "$dir/copy"
    t0=$(date +%s%N); $lab image pull "$image" >/dev/null 2>&1; t1=$(date +%s%N)
    skopeo copy --quiet --src-tls-verify=false "docker://$image" "oci:$dir/copy:fifty"; t2=$(date +%s%N)
    pulls+=("$(ms "$t0" "$t1")"); copies+=("$(ms "$t1" "$t2")")
    echo "round $r: lab image pull $(ms "$t0" "$t1") ms (pull + unpack), skopeo copy $(ms "$t1" "$t2") ms (pull only)"
done

topology() { # NAME IMAGE-LINE
    echo "name = \"$1\""; echo '[defaults]'; echo "$2"; echo '[networks.lan]'; echo 'subnet = "10.201.0.0/16"'
    for i in $(seq 1 "$nodes"); do printf '[nodes.n%d]\nnetworks = ["lan"]\ncommand = ["sleep", "infinity"]\n' "$i"; done
}
topology "bench-img-$$" "image = \"$image\"" > "$dir/img.toml"
topology "bench-host-$$" 'rootfs = "host"' > "$dir/host.toml"
imgs=(); hosts=()
for r in $(seq 1 "$rounds"); do
    for kind in host img; do
        t0=$(date +%s%N); $lab up "$dir/$kind.toml" >/dev/null 2>&1; t1=$(date +%s%N)
        $lab exec "bench-$kind-$$/n1" sleep 0 >/dev/null
        $lab down "bench-$kind-$$" >/dev/null 2>&1
        if [ "$kind" = img ]; then imgs+=("$(ms "$t0" "$t1")"); else hosts+=("$(ms "$t0" "$t1")"); fi
        echo "round $r: $nodes nodes on $kind: up $(ms "$t0" "$t1") ms"
    done
done
echo "pull of a 50 MB image: lab $(median "${pulls[@]}") ms, skopeo copy $(median "${copies[@]}") ms (medians of $rounds)"
echo "$nodes nodes: from the image $(median "${imgs[@]}") ms, on the host's root $(median "${hosts[@]}") ms (medians of $rounds)"
