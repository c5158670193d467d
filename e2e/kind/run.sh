#!/usr/bin/env bash
# tritonop end to end on kind, with the real Triton image running on CPU.
#
# *** This script cannot run on the machines tritonop is developed on: they have no container
# *** engine and no network beyond package registries. It is written for anyone with Docker,
# *** kind, kubectl, helm and access to nvcr.io. Its steps and helpers are checked there only
# *** statically (tests/test_kind_script.py: bash -n, the model builder, the InferenceService
# *** rendered offline); the whole run has not been executed by its authors. See README.md.
#
# What it does, in order (each step prints a "==>" line):
#   1. creates a kind cluster (e2e/kind/kind-config.yaml) with its own kubeconfig file
#   2. builds the operator image (operator/Dockerfile) and loads it into the cluster
#   3. pre-pulls the Triton image on the node (several GB; shows progress up front)
#   4. installs the chart with gpuFallback=CPU and the image just built
#   5. writes the ONNX add/sub model (make_model.py) into a PVC through a helper pod
#   6. applies e2e/kind/inferenceservice.yaml and waits until it is Ready on CPUFallback
#   7. data plane: kubectl port-forward to Triton, inferences checked, metrics counted
#      (check_triton.py)
#   8. stops the in-cluster operator and runs the e2e suite against the cluster
#      (TRITONOP_E2E_KUBECONFIG=<kubeconfig> pytest e2e; the suite starts its own operator
#      process as the chart's ServiceAccount, and skips the tests marked kwok_only)
# The cluster is deleted on exit, also on failure, unless KEEP_CLUSTER=1.
#
# Settings (environment):
#   CLUSTER_NAME   kind cluster name                 (default tritonop-e2e)
#   OPERATOR_IMAGE operator image to build and load  (default tritonop:e2e)
#   TRITON_IMAGE   Triton image                      (default: the chart's defaultTritonImage)
#   KEEP_CLUSTER   1 keeps the cluster for debugging (default 0)
#   SKIP_SUITE     1 stops after step 7              (default 0)
#   PYTHON         python with tritonop installed (pip install -e '.[test]' onnx)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-tritonop-e2e}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-tritonop:e2e}"
TRITON_IMAGE="${TRITON_IMAGE:-}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
SKIP_SUITE="${SKIP_SUITE:-0}"
PYTHON="${PYTHON:-python3}"
OPERATOR_NAMESPACE=tritonop-system
SERVICE_NAMESPACE=tritonop-kind
SERVICE_NAME=add-sub
HTTP_LOCAL_PORT="${HTTP_LOCAL_PORT:-18000}"
METRICS_LOCAL_PORT="${METRICS_LOCAL_PORT:-18002}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tritonop-kind.XXXXXX")"
export KUBECONFIG="$WORK/kubeconfig"
PORT_FORWARD_PID=""
CLUSTER_CREATED=0

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local status=$?
  if [[ -n "$PORT_FORWARD_PID" ]]; then
    kill "$PORT_FORWARD_PID" 2>/dev/null || true
  fi
  if [[ "$CLUSTER_CREATED" == 1 ]]; then
    if [[ "$status" != 0 ]]; then
      echo "--- failure: state for debugging ---" >&2
      kubectl get tis,deploy,pods,pvc -A -o wide >&2 || true
      kubectl -n "$OPERATOR_NAMESPACE" logs deploy/tritonop --tail=100 >&2 || true
      kubectl -n "$SERVICE_NAMESPACE" describe tis "$SERVICE_NAME" >&2 || true
    fi
    if [[ "$KEEP_CLUSTER" == 1 ]]; then
      echo "keeping cluster $CLUSTER_NAME (KUBECONFIG=$KUBECONFIG); delete with: kind delete cluster --name $CLUSTER_NAME"
      exit "$status"
    fi
    kind delete cluster --name "$CLUSTER_NAME" || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1 || fail "$1 is required ($2)"; }

# helm: the project's pinned build when it exists, otherwise whatever is on PATH.
if bin_dir="$("$PYTHON" "$ROOT/e2e/cluster/build" --print-bin-dir 2>/dev/null)"; then
  export PATH="$bin_dir:$PATH"
fi
need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "e2e/cluster/build, or https://helm.sh/docs/intro/install/"
need "$PYTHON" "python 3.11+"
"$PYTHON" -c 'import tritonop, onnx, tritonclient.http' 2>/dev/null \
  || fail "$PYTHON needs the project and onnx: pip install -e '.[test]' onnx"
docker info >/dev/null 2>&1 || fail "docker is installed but not usable (is the daemon running?)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  fail "a kind cluster named $CLUSTER_NAME exists already; delete it or set CLUSTER_NAME"
fi
if [[ -z "$TRITON_IMAGE" ]]; then
  TRITON_IMAGE="$("$PYTHON" -c 'import yaml, sys; print(yaml.safe_load(open(sys.argv[1]))["defaultTritonImage"])' \
    "$ROOT/charts/tritonop/values.yaml")"
fi

step "1/8 create kind cluster $CLUSTER_NAME"
CLUSTER_CREATED=1
kind create cluster --name "$CLUSTER_NAME" --config "$HERE/kind-config.yaml" \
  --kubeconfig "$KUBECONFIG" --wait 180s
NODE="$(kubectl get nodes -o jsonpath='{.items[0].metadata.name}')"

step "2/8 build operator image $OPERATOR_IMAGE and load it into the cluster"
docker build -f "$ROOT/operator/Dockerfile" -t "$OPERATOR_IMAGE" \
  --build-arg REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" "$ROOT"
kind load docker-image "$OPERATOR_IMAGE" --name "$CLUSTER_NAME"

step "3/8 pre-pull $TRITON_IMAGE on node $NODE (large; once per cluster)"
docker exec "$NODE" crictl pull "$TRITON_IMAGE"

step "4/8 install the chart (gpuFallback=CPU)"
helm install tritonop "$ROOT/charts/tritonop" \
  --namespace "$OPERATOR_NAMESPACE" --create-namespace \
  --set gpuFallback=CPU \
  --set defaultTritonImage="$TRITON_IMAGE" \
  --set image.repository="${OPERATOR_IMAGE%:*}" \
  --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --wait --timeout 5m
kubectl -n "$OPERATOR_NAMESPACE" rollout status deployment/tritonop --timeout=120s

step "5/8 model repository: ONNX add/sub model into PVC model-store"
"$PYTHON" "$HERE/make_model.py" "$WORK/models"
kubectl create namespace "$SERVICE_NAMESPACE"
kubectl -n "$SERVICE_NAMESPACE" apply -f - <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: model-store
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 100Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: model-loader
spec:
  restartPolicy: Never
  containers:
    - name: loader
      image: busybox:1.36
      command: ["sleep", "3600"]
      volumeMounts:
        - name: store
          mountPath: /data
  volumes:
    - name: store
      persistentVolumeClaim:
        claimName: model-store
EOF
kubectl -n "$SERVICE_NAMESPACE" wait pod/model-loader --for=condition=Ready --timeout=180s
kubectl -n "$SERVICE_NAMESPACE" cp "$WORK/models" model-loader:/data/repo
kubectl -n "$SERVICE_NAMESPACE" exec model-loader -- sh -c 'chmod -R a+rX /data/repo && find /data/repo'
kubectl -n "$SERVICE_NAMESPACE" delete pod model-loader --wait=true

step "6/8 InferenceService $SERVICE_NAME (asks for a GPU; kind has none, so CPU fallback)"
kubectl apply -f "$HERE/inferenceservice.yaml"
kubectl -n "$SERVICE_NAMESPACE" wait "inferenceservice/$SERVICE_NAME" \
  --for=condition=Ready --timeout=15m
placement="$(kubectl -n "$SERVICE_NAMESPACE" get tis "$SERVICE_NAME" -o jsonpath='{.status.placement.mode}')"
[[ "$placement" == CPUFallback ]] || fail "placement is '$placement', expected CPUFallback"
kubectl -n "$SERVICE_NAMESPACE" get tis "$SERVICE_NAME"

step "7/8 data plane through kubectl port-forward"
kubectl -n "$SERVICE_NAMESPACE" port-forward --address 127.0.0.1 "deployment/$SERVICE_NAME" \
  "$HTTP_LOCAL_PORT:8000" "$METRICS_LOCAL_PORT:8002" >"$WORK/port-forward.log" 2>&1 &
PORT_FORWARD_PID=$!
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" "$HERE/check_triton.py" --http "127.0.0.1:$HTTP_LOCAL_PORT" \
  --metrics "127.0.0.1:$METRICS_LOCAL_PORT" --model simple --requests 50
kill "$PORT_FORWARD_PID" 2>/dev/null || true
PORT_FORWARD_PID=""

if [[ "$SKIP_SUITE" == 1 ]]; then
  step "8/8 skipped (SKIP_SUITE=1)"
  exit 0
fi

step "8/8 e2e suite against the kind cluster"
# The suite runs its own operator process (as the chart's ServiceAccount); two standalone
# operators must never reconcile the same objects, so the in-cluster one steps aside.
kubectl -n "$OPERATOR_NAMESPACE" scale deployment/tritonop --replicas=0
for attempt in $(seq 60); do
  [[ -z "$(kubectl -n "$OPERATOR_NAMESPACE" get pods -l app.kubernetes.io/name=tritonop -o name)" ]] && break
  [[ "$attempt" == 60 ]] && fail "the in-cluster operator pod did not stop within 120s"
  sleep 2
done
(cd "$ROOT" && TRITONOP_E2E_KUBECONFIG="$KUBECONFIG" "$PYTHON" -m pytest e2e -q -p no:cacheprovider)

step "done: every step passed"
