{{/*
The chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "model-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every object: the release name when it already contains the chart name.
*/}}
{{- define "model-server.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "model-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The recommended labels on every object.
*/}}
{{- define "model-server.labels" -}}
helm.sh/chart: {{ include "model-server.chart" . }}
{{ include "model-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: inference
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "model-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "model-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "model-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "model-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The model name clients send.
*/}}
{{- define "model-server.servedModelName" -}}
{{- default .Release.Name .Values.engine.servedModelName }}
{{- end }}

{{/*
Where the model's files live inside the cache volume: one folder per repository and commit
(or revision, when unlocked), so a new commit never mixes with an old one.
*/}}
{{- define "model-server.modelDir" -}}
{{- printf "/models/%s/%s" (.Values.model.repo | replace "/" "--") (default .Values.model.revision .Values.model.commit) }}
{{- end }}

{{- define "model-server.claimName" -}}
{{- default (printf "%s-model-cache" (include "model-server.fullname" .)) .Values.modelCache.existingClaim }}
{{- end }}
