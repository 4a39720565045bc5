#!/usr/bin/env bash
# Builds (or reuses) the binaries of the test control plane and prints the folder holding them.
#
# Output on stdout: one line, the bin folder (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kubectl, helm). Progress goes to stderr.
#
# Environment:
#   KUBEBUILDER_ASSETS   a folder that already holds all six binaries: used as is, nothing is built.
#   ARCHIPEL_KUBE_CACHE  cache root (default $HOME/.cache/archipel-kube); binaries land in
#                        $ARCHIPEL_KUBE_CACHE/<kubernetes version>/bin.
# GOMODCACHE and GOCACHE keep their defaults so a CI cache of them makes rebuilds incremental.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module_dir="$here/bin"
helm_dir="$here/bin/helm"

# Keep in lockstep with bin/go.mod and bin/helm/go.mod.
kube_version="v1.36.3"
helm_version="v3.22.0"
helm_k8s_major="1"   # helm's defaults for .Capabilities.KubeVersion = its client-go (v0.37) as its Makefile does
helm_k8s_minor="37"

binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm)

has_all() {
  local dir="$1" name
  for name in "${binaries[@]}"; do
    [[ -x "$dir/$name" ]] || return 1
  done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if has_all "$KUBEBUILDER_ASSETS"; then
    echo "kube setup: using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS" >&2
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  echo "kube setup: KUBEBUILDER_ASSETS lacks some of ${binaries[*]}; building into the cache instead" >&2
fi

command -v go >/dev/null || { echo "kube setup: Go is required (see test/kube/README.md)" >&2; exit 1; }
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-trimpath -mod=readonly"

cache_root="${ARCHIPEL_KUBE_CACHE:-$HOME/.cache/archipel-kube}"
bin_dir="$cache_root/$kube_version/bin"
mkdir -p "$bin_dir"
go_version="$(go env GOVERSION)"

# SOURCE_DATE_EPOCH-style fixed date keeps the binaries reproducible between runs.
build_date="2026-01-01T00:00:00Z"
kube_ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  minor="${kube_version#v1.}"; minor="${minor%%.*}"
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=$helm_k8s_major -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done

# build NAME MODULE_DIR PACKAGE LDFLAGS: one binary at a time (the compile of one kube binary
# can take several GiB; two in parallel on a small machine risks the OOM killer).
build() {
  local name="$1" dir="$2" pkg="$3" ldflags="$4"
  local stamp="$bin_dir/.$name.stamp"
  local want="$pkg $go_version $(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16) $ldflags"
  if [[ -x "$bin_dir/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "kube setup: $name cached" >&2
    return 0
  fi
  echo "kube setup: building $name ($pkg)" >&2
  local start=$SECONDS
  (cd "$dir" && go build -ldflags "$ldflags" -o "$bin_dir/.$name.tmp" "$pkg")
  mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
  echo "$want" > "$stamp"
  echo "kube setup: built $name in $((SECONDS - start)) s" >&2
}

total_start=$SECONDS
build etcd "$module_dir" go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver "$module_dir" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager "$module_dir" k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build kube-scheduler "$module_dir" k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
build kubectl "$module_dir" k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"
build helm "$helm_dir" helm.sh/helm/v3/cmd/helm "$helm_ldflags"
echo "kube setup: done in $((SECONDS - total_start)) s" >&2

has_all "$bin_dir" || { echo "kube setup: missing binaries in $bin_dir" >&2; exit 1; }
echo "$bin_dir"
