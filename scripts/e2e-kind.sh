#!/usr/bin/env bash
# npm run e2e:kind — for contributors with Docker: both images, a kind cluster with one zone-labelled
# worker per site, the chart installed, then the kube end-to-end suite against that cluster.
# Thin on purpose: what the suite checks lives in the suite (test/kube/), which runs the same way
# against the local control plane.
#
# Needs docker, kind, kubectl and helm on PATH. Environment:
#   ARCHIPEL_KIND_CLUSTER  cluster name (default archipel-e2e)
#   ARCHIPEL_KIND_KEEP=1   keep the cluster afterwards (default: deleted on exit)
#   ARCHIPEL_E2E_SPEC      the test files (default: every compiled test/kube test)
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${ARCHIPEL_KIND_CLUSTER:-archipel-e2e}"
version="$(node -p 'require("./package.json").version')"
operator_image="ghcr.io/archipel/operator:${version}"
# The Grid's default image (operator/src/api/types.ts DEFAULTS.image).
node_image="ghcr.io/archipel/storage-node:${version}"
# One worker per site of crds/samples/three-sites.yaml; a Site runs in the zone named like it.
zones=(dc1 dc2 dc3)

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool not found on PATH" >&2; exit 1; }
done

work="$(mktemp -d)"
export KUBECONFIG="$work/kubeconfig"   # never the user's ~/.kube/config
cleanup() {
  if [[ "${ARCHIPEL_KIND_KEEP:-}" == 1 ]]; then
    echo "e2e-kind: kept cluster $cluster (KUBECONFIG=$KUBECONFIG)"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

echo "e2e-kind: building $operator_image and $node_image"
docker build -f docker/Dockerfile --target operator -t "$operator_image" .
docker build -f docker/Dockerfile --target storage-node -t "$node_image" .

echo "e2e-kind: creating cluster $cluster"
cat >"$work/kind.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
$(for _ in "${zones[@]}"; do echo "  - role: worker"; done)
YAML
kind create cluster --name "$cluster" --config "$work/kind.yaml" --kubeconfig "$KUBECONFIG" --wait 180s
mapfile -t workers < <(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o name | sort)
for i in "${!zones[@]}"; do
  kubectl label --overwrite "${workers[$i]}" "topology.kubernetes.io/zone=${zones[$i]}"
done
kind load docker-image --name "$cluster" "$operator_image" "$node_image"

echo "e2e-kind: installing the chart"
helm install archipel-operator charts/archipel-operator --namespace archipel-system --create-namespace \
  --set image.tag="$version" --set image.pullPolicy=Never --wait --timeout 180s
kubectl -n archipel-system rollout status deployment/archipel-operator --timeout 60s

# The suite takes its cluster from ARCHIPEL_KUBECONFIG; until test/kube/kube-cluster.ts reads it,
# the tests would start their own local control plane instead, so stop here rather than pretend.
if ! grep -q ARCHIPEL_KUBECONFIG test/kube/kube-cluster.ts; then
  echo "e2e-kind: the chart is installed and the operator is running on kind cluster $cluster, but the" >&2
  echo "e2e-kind: kube suite cannot use an existing cluster yet (ARCHIPEL_KUBECONFIG, see test/kube/README.md)" >&2
  exit 2
fi
npm run build
ARCHIPEL_KUBECONFIG="$KUBECONFIG" ARCHIPEL_KUBE_REQUIRED=1 \
  npx mocha --no-config --timeout 600000 --exit ${ARCHIPEL_E2E_SPEC:-'dist/test/kube/*.test.js'}
