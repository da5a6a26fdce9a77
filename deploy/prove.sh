#!/usr/bin/env bash
# Build the hardened gateway image and prove it runs: docker on this host, no registry.
#   deploy/prove.sh [WORKDIR]      (root; docker.io and debootstrap installed)
# 1. starts dockerd (no iptables, no bridge) unless one answers;
# 2. makes the base image (deploy/make-base.sh) and the wheelhouse (deploy/wheelhouse.sh);
# 3. builds deploy/Dockerfile with --network none;
# 4. creates a key and runs the gateway read-only, all capabilities dropped, no new privileges,
#    host network on 127.0.0.1, config and model mounted read-only, a tmpfs on /tmp, the
#    database on a volume; then GET /healthz and one predict, and prints the figures
#    docs/deploy.md records (image size, user, files, no shell).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-/tmp/mlwarden-deploy-proof}
port=${PORT:-18080}
image=mlwarden-gateway:proof
mkdir -p "$work"/{config,models,data}

if ! docker info >/dev/null 2>&1; then
  dockerd --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker image inspect mlwarden-base:bookworm >/dev/null 2>&1 || "$here/make-base.sh" "$work/rootfs"
[ -d "$here/wheels" ] || "$here/wheelhouse.sh" "${PYTHON:-python3}"
docker build --network none -t "$image" "$here"

# the model (any signed or scanned .pt2 with its metadata sidecar) and the config, read-only
"${PYTHON:-python3}" - "$work/models" <<'PY'
import shutil, sys
from pathlib import Path
from mlwarden.models.zoo import load_zoo_model, zoo_path
load_zoo_model("digits-cnn")  # trains into the cache once if missing
src = zoo_path("digits-cnn")
for suffix in ("", ".mlwarden.json"):
    shutil.copy(str(src) + suffix, Path(sys.argv[1]) / ("digits.pt2" + suffix))
PY
cat >"$work/config/gateway.yaml" <<YAML
database: sqlite:////data/gateway.db
models:
  digits: {source: /models/digits.pt2, max_batch: 64}
roles:
  client: {grants: [{models: [digits], actions: [predict]}]}
rate_limits: {storage: "memory://", per_key_model: ["50/second"], daily_quota: 1000}
monitor: {enabled: true, reference: "builtin:digits:train"}
YAML
chown -R 65532:65532 "$work/data"

hardening=(--read-only --cap-drop=ALL --security-opt no-new-privileges --user 65532:65532
  --tmpfs /tmp:rw,noexec,nosuid,size=64m
  -v "$work/config:/config:ro" -v "$work/models:/models:ro" -v "$work/data:/data:rw")
key=$(docker run --rm "${hardening[@]}" --network none "$image" \
  keys create --role client --config /config/gateway.yaml --quiet)
docker rm -f mlwarden-proof >/dev/null 2>&1 || true
# host network (no bridge on this host): bind 127.0.0.1 only
docker run -d --name mlwarden-proof "${hardening[@]}" --network host \
  -e MLWARDEN_HEALTH_URL="http://127.0.0.1:$port/healthz" "$image" \
  serve --config /config/gateway.yaml --host 127.0.0.1 --port "$port" >/dev/null
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 1
done
echo "healthz: $(curl -s "http://127.0.0.1:$port/healthz")"
body=$("${PYTHON:-python3}" -c 'import json; print(json.dumps({"inputs": [[[[0.0]*8]*8]]}))')
echo "predict: $(curl -s -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d "$body" "http://127.0.0.1:$port/v1/models/digits/predict")"
echo "image size: $(docker image inspect "$image" --format '{{.Size}}') bytes"
echo "configured user: $(docker image inspect "$image" --format '{{.Config.User}}')"
pid=$(docker inspect mlwarden-proof --format '{{.State.Pid}}')
echo "process uid/gid: $(awk '/^Uid|^Gid/ {print $1, $2}' /proc/"$pid"/status | tr '\n' ' ')"
echo "capabilities (effective): $(awk '/^CapEff/ {print $2}' /proc/"$pid"/status)"
echo "no_new_privs: $(awk '/^NoNewPrivs/ {print $2}' /proc/"$pid"/status)"
docker export mlwarden-proof | tar -t >"$work/files.txt"
echo "files in the image: $(grep -vc '/$' "$work/files.txt")"
echo "shells, package managers, compilers: $(grep -E '(^|/)(sh|bash|dash|apt|apt-get|dpkg|pip[0-9.]*|gcc|cc|ld)$' "$work/files.txt" | tr '\n' ' ')(none if empty)"
sleep 35
echo "health status: $(docker inspect mlwarden-proof --format '{{.State.Health.Status}}')"
docker rm -f mlwarden-proof >/dev/null
