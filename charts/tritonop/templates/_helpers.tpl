{{/*
Names and labels shared by every template. Kept in one place so the Deployment's selector,
the Service and the PDB can never disagree.
*/}}

{{- define "tritonop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name (release "tritonop"
gives "tritonop", not "tritonop-tritonop"). */}}
{{- define "tritonop.fullname" -}}
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

{{/* Pod selector of the operator: stable across upgrades (no version in it). */}}
{{- define "tritonop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tritonop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object the chart creates. Helm's bookkeeping labels only when
helmLabels is true, so the plain manifests carry no Helm-specific labels. */}}
{{- define "tritonop.labels" -}}
{{ include "tritonop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tritonop
{{- if .Values.helmLabels }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tritonop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tritonop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when several operator replicas need kopf peering (exactly one active). */}}
{{- define "tritonop.peeringEnabled" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "tritonop.peeringName" -}}
{{- default (include "tritonop.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The CRD annotation that keeps CRDs (and so every custom resource) on helm uninstall. */}}
{{- define "tritonop.crdAnnotations" -}}
{{- if .Values.crds.keep }}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}
