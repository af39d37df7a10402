{{/* Names, labels and the values every template derives from the same inputs. */}}

{{- define "gatekeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatekeeper.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gatekeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatekeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatekeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatekeeper.labels" -}}
helm.sh/chart: {{ include "gatekeeper.chart" . }}
{{ include "gatekeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: release-gatekeeper
{{- end }}

{{- define "gatekeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatekeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatekeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gatekeeper.leaseName" -}}
{{- default (include "gatekeeper.fullname" .) .Values.lease.name }}
{{- end }}

{{/* The Secret and key holding the PostgreSQL URL. */}}
{{- define "gatekeeper.dbSecretName" -}}
{{- if .Values.store.postgres.url }}
{{- printf "%s-store" (include "gatekeeper.fullname" .) }}
{{- else }}
{{- .Values.store.postgres.existingSecret }}
{{- end }}
{{- end }}

{{- define "gatekeeper.dbSecretKey" -}}
{{- if .Values.store.postgres.url }}url{{ else }}{{ .Values.store.postgres.existingSecretKey }}{{ end }}
{{- end }}

{{/* The Secret and key holding the tokens file; empty when there is none. */}}
{{- define "gatekeeper.tokensSecretName" -}}
{{- if .Values.auth.tokens }}
{{- printf "%s-tokens" (include "gatekeeper.fullname" .) }}
{{- else if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- end }}
{{- end }}

{{- define "gatekeeper.tokensSecretKey" -}}
{{- if .Values.auth.tokens }}tokens{{ else }}{{ .Values.auth.existingSecretKey }}{{ end }}
{{- end }}

{{- define "gatekeeper.argo" -}}
{{- if eq .Values.executor.kind "argo" }}true{{ end }}
{{- end }}

{{/* Settings that cannot work together, refused with what to change. */}}
{{- define "gatekeeper.validate" -}}
{{- if and (eq .Values.store.type "sqlite") (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "store.type sqlite: replicaCount is %d, but a SQLite file serves one replica; set replicaCount: 1 or store.type: postgres" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq .Values.store.type "postgres") (not .Values.store.postgres.url) (not .Values.store.postgres.existingSecret) }}
{{- fail "store.type postgres: give store.postgres.url or store.postgres.existingSecret" }}
{{- end }}
{{- if include "gatekeeper.argo" . }}
{{- if eq .Values.store.type "sqlite" }}
{{- fail "executor.kind argo: the step pods write the same store as the service; use store.type: postgres" }}
{{- end }}
{{- if and .Values.executor.argo.workflow.envSecret.create (not .Values.store.postgres.url) }}
{{- fail "executor.argo.workflow.envSecret.create: the chart can only write GATEKEEPER_DB_URL from store.postgres.url; give it, or create the Secret in the Argo namespace yourself and set envSecret.create: false" }}
{{- end }}
{{- end }}
{{- if and .Values.rbac.clusterWide .Values.rbac.targetNamespaces }}
{{- fail "rbac: give targetNamespaces or clusterWide, not both" }}
{{- end }}
{{- if and .Values.auth.oidc.enabled (or (not .Values.auth.oidc.issuer) (not .Values.auth.oidc.audience)) }}
{{- fail "auth.oidc.enabled: give auth.oidc.issuer and auth.oidc.audience" }}
{{- end }}
{{- end }}

{{/* The subjects the target's rules are granted to: the service, and the Argo step pods. */}}
{{- define "gatekeeper.targetSubjects" -}}
- kind: ServiceAccount
  name: {{ include "gatekeeper.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- if include "gatekeeper.argo" . }}
- kind: ServiceAccount
  name: {{ .Values.executor.argo.workflow.serviceAccount.name }}
  namespace: {{ .Values.executor.argo.namespace }}
{{- end }}
{{- end }}

{{/* The target's rules: deploy/kubernetes/role.yaml, copied into files/ by scripts/chart-sync. */}}
{{- define "gatekeeper.targetRules" -}}
{{- $role := .Files.Get "files/target-role.yaml" | fromYaml }}
{{- toYaml $role.rules }}
{{- end }}
