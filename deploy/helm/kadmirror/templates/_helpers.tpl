{{/* The chart's name. */}}
{{- define "kadmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name, with the chart name appended unless it already holds it. */}}
{{- define "kadmirror.fullname" -}}
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

{{/* The namespace objects go to. */}}
{{- define "kadmirror.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kadmirror.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kadmirror.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select this release's pods. */}}
{{- define "kadmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kadmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kadmirror.serviceAccountName" -}}
{{- default (include "kadmirror.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag (default the chart's appVersion). */}}
{{- define "kadmirror.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The security context of containers on the node's containerd: root unless the values choose a user. */}}
{{- define "kadmirror.nodeSecurityContext" -}}
{{- toYaml (merge (deepCopy .Values.securityContext) (dict "runAsUser" 0)) }}
{{- end }}

{{/* NODE_IP: the value given, or the node's address. */}}
{{- define "kadmirror.nodeIpEnv" -}}
- name: NODE_IP
{{- if .Values.service.registry.nodeIp }}
  value: {{ .Values.service.registry.nodeIp | quote }}
{{- else }}
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
{{- end }}
{{- end }}

{{/* The DNS name of the headless bootstrap Service. */}}
{{- define "kadmirror.bootstrapDomain" -}}
{{- printf "%s-bootstrap.%s.svc.%s" (include "kadmirror.fullname" .) (include "kadmirror.namespace" .) .Values.clusterDomain }}
{{- end }}
