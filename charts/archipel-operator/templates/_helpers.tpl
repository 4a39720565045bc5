{{/* Names, labels, the image, and the RBAC rules shared by the ClusterRole and the per-namespace Roles. */}}

{{- define "archipel-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* fullnameOverride, else <release>-archipel-operator, or the release name alone when it holds the chart name. */}}
{{- define "archipel-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "archipel-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Immutable once the Deployment exists: only what never changes for a release. */}}
{{- define "archipel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "archipel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
managed-by is Helm here: the operator's informers select the objects it builds by
app.kubernetes.io/managed-by=archipel-operator, which its own Deployment must not carry.
*/}}
{{- define "archipel-operator.labels" -}}
{{ include "archipel-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: archipel
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "archipel-operator.chart" . }}
{{- end -}}

{{- define "archipel-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "archipel-operator.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "archipel-operator.leaseName" -}}
{{- include "archipel-operator.fullname" . -}}
{{- end -}}

{{- define "archipel-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Stops the render on values that would give a broken install. */}}
{{- define "archipel-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicas > 1 needs leaderElection.enabled=true: two operators without a Lease would reconcile the same objects at once" -}}
{{- end -}}
{{- if ne (len (.Values.watchNamespaces | uniq)) (len .Values.watchNamespaces) -}}
{{- fail "watchNamespaces names a namespace twice" -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does in the namespaces it watches, and nothing more. Keep in step with
operator/src/builders/ (the objects it applies), operator/src/runtime/informers.ts (what it
watches) and the list in test/kube/chart.test.ts, which checks these rules on an API server.
No delete verb anywhere: owned objects go with their owner through garbage collection, and a
Bucket's data is deleted through the storage nodes' admin API, not through Kubernetes.
*/}}
{{- define "archipel-operator.rules" -}}
# The custom resources: watched; patched for the Bucket finalizer (added once, removed with a precise patch).
- apiGroups: [storage.archipel.io]
  resources: [grids, sites, nodepools, replicationpolicies, buckets]
  verbs: [get, list, watch, patch]
# Status is written only through /status.
- apiGroups: [storage.archipel.io]
  resources: [grids/status, sites/status, nodepools/status, replicationpolicies/status, buckets/status]
  verbs: [get, patch, update]
# Owner references with blockOwnerDeletion: true need this where the OwnerReferencesPermissionEnforcement
# admission plugin runs (OpenShift, hardened clusters). Grids, Sites, NodePools and Buckets own objects.
- apiGroups: [storage.archipel.io]
  resources: [grids/finalizers, sites/finalizers, nodepools/finalizers, buckets/finalizers]
  verbs: [update]
# Owned and watched: applied server-side (an apply that creates needs create as well as patch).
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch]
# Services of the grid; Secrets: the grid Secret (read back for the admin token) and each Bucket's credentials.
- apiGroups: [""]
  resources: [services, secrets]
  verbs: [get, list, watch, create, patch]
# Owned, applied, not watched.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
# Storage-node pods: readiness and pod IPs for the layout. Created by the StatefulSet controller, not by the operator.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Events a user sees with kubectl describe.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
