{{/* Resource name: the release name, with "portcullis" unless the release already says it. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Service's cluster-local host name (what Envoy and Istio call). */}}
{{- define "portcullis.host" -}}
{{- printf "%s.%s.svc.cluster.local" (include "portcullis.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "portcullis.secretsDir" -}}/var/run/secrets/portcullis{{- end -}}
{{- define "portcullis.tlsDir" -}}/var/run/secrets/portcullis-grpc{{- end -}}

{{/*
The gateway config. The chart owns server (it must agree with the ports, probes, mounts and the
drain), the store when its Redis is on, and policy.data when policyData is set.
*/}}
{{- define "portcullis.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) -}}
{{- $secrets := include "portcullis.secretsDir" . -}}
{{- $tls := include "portcullis.tlsDir" . -}}
{{- $server := dict
  "grpc_address" "0.0.0.0"
  "grpc_port" (int .Values.ports.grpc)
  "grpc_tls" (dict "ca" (printf "%s/ca.crt" $tls) "cert" (printf "%s/tls.crt" $tls) "key" (printf "%s/tls.key" $tls) "client_sans" .Values.grpcTls.clientSans)
  "handoff_key" (dict "file" (printf "%s/handoff-key" $secrets))
  "admin_address" "0.0.0.0"
  "admin_port" (int .Values.ports.admin)
  "admin_token" (dict "file" (printf "%s/admin-token" $secrets))
  "shutdown_grace_ms" (int .Values.shutdownGraceMs)
  "log_level" .Values.logLevel -}}
{{- $_ := set $cfg "server" (merge $server (default (dict) $cfg.server)) -}}
{{- $policy := merge (default (dict) $cfg.policy) (dict "bundle" "/app/policies/build/bundle.tar.gz") -}}
{{- if .Values.policyData }}{{- $_ := set $policy "data" "/etc/portcullis/data.json" -}}{{- end -}}
{{- $_ := set $cfg "policy" $policy -}}
{{- if .Values.redis.enabled -}}
{{- $_ := set $cfg "store" (dict "kind" "redis" "redis" (dict "url" (printf "redis://%s-redis:6379" (include "portcullis.fullname" .)))) -}}
{{- else if .Values.store.url -}}
{{- $_ := set $cfg "store" (dict "kind" "redis" "redis" (dict "url" .Values.store.url)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
