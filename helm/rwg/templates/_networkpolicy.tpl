{{/* Rule pieces of networkpolicy.yaml. */}}
{{- define "rwg.np.dns" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}
{{- define "rwg.np.redis" -}}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels: {{- include "rwg.selectorLabels" (dict "ctx" . "component" "redis") | nindent 10 }}
  ports:
    - {port: 6379, protocol: TCP}
{{- if include "rwg.redisSentinel" . }}
- to:
    - podSelector:
        matchLabels: {{- include "rwg.selectorLabels" (dict "ctx" . "component" "redis-sentinel") | nindent 10 }}
  ports:
    - {port: 26379, protocol: TCP}
{{- end }}
{{- else }}
- ports:
    - {port: {{ splitList ":" .Values.redis.external.address | last | int }}, protocol: TCP}
{{- end }}
{{- end }}
{{- define "rwg.np.metrics" -}}
- from:
    - namespaceSelector: {{- toYaml .ctx.Values.networkPolicy.metricsNamespaceSelector | nindent 8 }}
  ports:
    - {port: {{ .port }}, protocol: TCP}
{{- end }}
