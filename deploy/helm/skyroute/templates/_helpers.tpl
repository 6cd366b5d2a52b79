{{/*
Names are fixed (skyroute-operator, skyroute-router, ...), not derived from the
release name: the CRDs, the ClusterRole and the ValidatingWebhookConfiguration
are cluster-wide, so one skyroute runs per cluster, and the operator's flags
name its Lease, Secret and webhook configuration.
*/}}

{{/* Labels on every object's metadata: kustomize's common labels, the component, Helm's. */}}
{{- define "skyroute.labels" -}}
app.kubernetes.io/name: skyroute
app.kubernetes.io/part-of: skyroute
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector (and pod template) labels of one component. */}}
{{- define "skyroute.selector" -}}
app.kubernetes.io/name: skyroute
app.kubernetes.io/component: {{ . }}
{{- end -}}

{{/* repository:tag of an image block; the tag defaults to the chart's appVersion. */}}
{{- define "skyroute.image" -}}
{{ .image.repository }}:{{ .image.tag | default .ctx.Chart.AppVersion }}
{{- end -}}

{{/* The pod security context every skyroute pod runs with (PodSecurity restricted). */}}
{{- define "skyroute.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "skyroute.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* Scheduling fields shared by both Deployments (.v is the component's values). */}}
{{- define "skyroute.scheduling" -}}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The webhook certificate comes from the operator itself (a Secret it creates)? */}}
{{- define "skyroute.webhookSelfManaged" -}}
{{- if eq .Values.webhook.tls.mode "operator" }}true{{ end -}}
{{- end -}}

{{/* Secret holding the webhook's serving certificate (every mode has one). */}}
{{- define "skyroute.webhookSecret" -}}
{{- .Values.webhook.tls.secretName | default "skyroute-webhook-tls" -}}
{{- end -}}

{{/* The routers' link certificate comes from the operator itself (a Secret it creates)? */}}
{{- define "skyroute.linkSelfManaged" -}}
{{- if eq .Values.link.tls.mode "operator" }}true{{ end -}}
{{- end -}}

{{/* Secret holding the link's serving certificate (every mode has one). */}}
{{- define "skyroute.linkSecret" -}}
{{- .Values.link.tls.secretName | default "skyroute-control-tls" -}}
{{- end -}}

{{/* The Secrets the operator itself keeps (and may read): none when both come from elsewhere. */}}
{{- define "skyroute.ownSecrets" -}}
{{- $names := list -}}
{{- if include "skyroute.webhookSelfManaged" . }}{{ $names = append $names (include "skyroute.webhookSecret" .) }}{{ end -}}
{{- if include "skyroute.linkSelfManaged" . }}{{ $names = append $names (include "skyroute.linkSecret" .) }}{{ end -}}
{{- join ", " $names -}}
{{- end -}}

{{/* Redis URL the routers use: the chart's Redis, or an external one, or none. */}}
{{- define "skyroute.redisURL" -}}
{{- if .Values.redis.url -}}
{{ .Values.redis.url }}
{{- else if .Values.redis.enabled -}}
redis://skyroute-redis.{{ .Release.Namespace }}.svc:6379/0
{{- end -}}
{{- end -}}
