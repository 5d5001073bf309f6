{{/* Names. */}}
{{- define "rwg.fullname" -}}
{{- if contains "rwg" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-rwg" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rwg.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" -}}
{{- end -}}

{{/* Labels: include "rwg.labels" (dict "ctx" $ "component" "control") */}}
{{- define "rwg.selectorLabels" -}}
app.kubernetes.io/name: rwg
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "rwg.labels" -}}
{{ include "rwg.selectorLabels" . }}
helm.sh/chart: {{ include "rwg.chart" .ctx }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: rwg
{{- end -}}

{{- define "rwg.image" -}}
{{- printf "%s/%s:%s" .ctx.Values.image.repository .name (.ctx.Values.image.tag | default .ctx.Chart.AppVersion) -}}
{{- end -}}

{{/* Secret names. */}}
{{- define "rwg.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "rwg.fullname" .)) -}}
{{- end -}}
{{- define "rwg.publicTlsName" -}}
{{- .Values.tls.public.existingSecret | default (printf "%s-tls-public" (include "rwg.fullname" .)) -}}
{{- end -}}
{{- define "rwg.syncTlsName" -}}
{{- .Values.sync.tls.existingSecret | default (printf "%s-tls-sync" (include "rwg.fullname" .)) -}}
{{- end -}}
{{- define "rwg.internalTlsName" -}}
{{- .Values.tls.internal.existingSecret | default (printf "%s-tls-internal" (include "rwg.fullname" .)) -}}
{{- end -}}

{{/* Redis. */}}
{{- define "rwg.redisAddress" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s-redis.%s.svc.cluster.local:6379" (include "rwg.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.redis.external.address -}}
{{- end -}}
{{- end -}}
{{- define "rwg.redisPasswordSecret" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth -}}{{ printf "%s-redis" (include "rwg.fullname" .) }}{{- end -}}
{{- else -}}
{{- .Values.redis.external.passwordSecret.name -}}
{{- end -}}
{{- end -}}
{{/* "true" when the chart deploys Redis with Sentinel. */}}
{{- define "rwg.redisSentinel" -}}
{{- if and .Values.redis.enabled .Values.redis.sentinel.enabled -}}true{{- end -}}
{{- end -}}
{{/* The DNS name of Redis pod N (headless Service), and of sentinel N. */}}
{{- define "rwg.redisPodHost" -}}
{{- printf "%s-redis-%d.%s-redis-headless.%s.svc.cluster.local" (include "rwg.fullname" .ctx) (int .n) (include "rwg.fullname" .ctx) .ctx.Release.Namespace -}}
{{- end -}}
{{- define "rwg.sentinelHosts" -}}
{{- $full := include "rwg.fullname" . -}}
{{- $hosts := list -}}
{{- range $i := until (int .Values.redis.sentinel.sentinels) -}}
{{- $hosts = append $hosts (printf "%s-redis-sentinel-%d.%s-redis-sentinel.%s.svc.cluster.local:26379" $full $i $full $.Release.Namespace) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
{{/* Shell functions of the Redis and sentinel pods' init containers (busybox from the Redis
image): ask_master prints "host port" of the master the sentinels name now (nothing when none
answers), ask_live_replicas how many replicas the sentinels see up (the most any of them
sees; 0 when none answers), scan_redis what the Redis pods say (below), find_master
"host port" of the master this pod should follow (nothing on a first start). */}}
{{- define "rwg.sentinelShell" -}}
mkdir -p /tmp/bin && /usr/bin/busybox --install -s /tmp/bin && export PATH=/tmp/bin || exit 1
PASSWORD=""
if [ -f /etc/redis-auth/password ]; then PASSWORD=$(cat /etc/redis-auth/password); fi
SENTINELS="{{ range $i, $h := splitList "," (include "rwg.sentinelHosts" .) }}{{ if $i }} {{ end }}{{ trimSuffix ":26379" $h }}{{ end }}"
REDIS_PODS="{{ range $i := until (int (add 1 .Values.redis.sentinel.replicas)) }}{{ if $i }} {{ end }}{{ include "rwg.redisPodHost" (dict "ctx" $ "n" $i) }}{{ end }}"
redis_cmd() {
  { if [ -n "$PASSWORD" ]; then printf 'AUTH %s\r\n' "$PASSWORD"; fi; printf '%s\r\n' "$3"; } |
    timeout 3 nc "$1" "$2" 2>/dev/null | tr -d '\r'
}
sentinel_cmd() { redis_cmd "$1" 26379 "$2"; }
ask_master() {
  for s in $SENTINELS; do
    r=$(sentinel_cmd "$s" "SENTINEL get-master-addr-by-name {{ .Values.redis.sentinel.masterName }}" |
      awk '/^\*2$/ {getline; getline h; getline; getline p; print h " " p; exit}')
    if [ -n "$r" ]; then echo "$r"; return; fi
  done
}
# Replicas a failover could promote: not down and linked to the sentinels. The most any
# sentinel sees (one just restarted knows none yet).
ask_live_replicas() {
  most=0
  for s in $SENTINELS; do
    r=$(sentinel_cmd "$s" "SENTINEL replicas {{ .Values.redis.sentinel.masterName }}")
    if echo "$r" | grep -q '^\*'; then  # an array: this sentinel answered
      n=$(echo "$r" | awk '/^[*$+]/ {next} k == "flags" {if ($0 !~ /s_down|o_down|disconnected/) n++}
        {k = $0} END {print n + 0}')
      if [ "$n" -gt "$most" ]; then most=$n; fi
    fi
  done
  echo "$most"
}
# What one Redis pod says: "master", "live <host> <port>" (a replica linked to its master,
# which is alive), "data <offset>" (a replica holding data, its master gone), or nothing.
redis_state() {
  redis_cmd "$1" 6379 INFO | awk -F: '/^role:/ {r = $2} /^master_host:/ {h = $2}
    /^master_port:/ {p = $2} /^master_link_status:/ {l = $2} /^slave_repl_offset:/ {o = $2}
    /^db[0-9]+:keys=/ {k = 1}
    END {if (r == "master") print "master"; else if (r == "slave" && l == "up") print "live " h " " p;
      else if (r == "slave" && k) print "data " o}'
}
# One pass over the Redis pods: "master <host> <port>" when one says it is the master or a
# replica is linked to a live one; else "replica <host> <port>", the replica holding data with
# the highest replication offset (the first on a tie); else nothing. Steps running at once
# choose alike: with the master gone the offsets stand still, and a replica already promoted
# by another step, or pointed to it, reads as a master.
scan_redis() {
  best=""; most=-1
  for h in $REDIS_PODS; do
    st=$(redis_state "$h")
    case "$st" in
      master) echo "master $h 6379"; return ;;
      live\ *) echo "master ${st#live }"; return ;;
      data\ *) if [ "${st#data }" -gt "$most" ]; then best=$h; most=${st#data }; fi ;;
    esac
  done
  if [ -n "$best" ]; then echo "replica $best 6379"; fi
}
# The master the sentinels name; when none answers, what the Redis pods say. When no master
# is left (it went with every sentinel), the replica holding the most data is promoted, as a
# failover would, and the other replicas are pointed to it: a master started empty (pod 0's
# fallback) would empty them. Nothing: a first start (or a promotion that failed).
find_master() {
  m=$(ask_master)
  if [ -n "$m" ]; then echo "$m"; return; fi
  s=$(scan_redis)
  case "$s" in
    master\ *) echo "${s#master }"; return ;;
    replica\ *) m=${s#replica } ;;
    *) return ;;
  esac
  # Once more, that replica alone, just before: another step may have pointed it elsewhere.
  st=$(redis_state "${m% *}")
  case "$st" in live\ *) echo "${st#live }"; return ;; esac
  echo "no sentinel and no master answers: promoting the replica holding the most, ${m% *}" >&2
  if ! redis_cmd "${m% *}" 6379 "REPLICAOF NO ONE" | tail -n 1 | grep -qx '+OK'; then
    echo "${m% *} refused or did not answer REPLICAOF NO ONE" >&2
    return
  fi
  for h in $REDIS_PODS; do
    if [ "$h" != "${m% *}" ] && redis_cmd "$h" 6379 ROLE | grep -qx slave; then
      redis_cmd "$h" 6379 "REPLICAOF $m" >/dev/null
    fi
  done
  echo "$m"
}
{{- end -}}
{{/* "true" when the services reach an external Redis over TLS (the chart's own Redis has none). */}}
{{- define "rwg.redisTls" -}}
{{- if and (not .Values.redis.enabled) .Values.redis.external.tls.enabled -}}true{{- end -}}
{{- end -}}
{{- define "rwg.redisPasswordKey" -}}
{{- if .Values.redis.enabled -}}password{{- else -}}{{ .Values.redis.external.passwordSecret.key | default "password" }}{{- end -}}
{{- end -}}

{{/* Service DNS names. */}}
{{- define "rwg.svc" -}}
{{- printf "%s-%s.%s.svc.cluster.local" (include "rwg.fullname" .ctx) .name .ctx.Release.Namespace -}}
{{- end -}}

{{/* The pod security context shared by rwg's pods. */}}
{{- define "rwg.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A container's security context; include with (dict "add" (list "SYS_NICE")). */}}
{{- define "rwg.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
{{- if .root }}
{{- /* Kubernetes grants a non-root process no capability (no ambient set): a capability a
  container must use makes it UID 0, with every other capability dropped. */}}
runAsUser: 0
runAsNonRoot: false
{{- else }}
runAsNonRoot: true
{{- end }}
capabilities:
  drop: [ALL]
  {{- with .add }}
  add: {{ toJson . }}
  {{- end }}
{{- end -}}

{{/* Environment every rwg container gets: downward API and the probes' rwgctl settings. */}}
{{- define "rwg.env" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: NODE_IP
  valueFrom: {fieldRef: {fieldPath: status.hostIP}}
- name: RWG_CA_CERT
  value: /etc/rwg/internal/ca.crt
{{- end -}}

{{/* Volumes every rwg service pod mounts. */}}
{{- define "rwg.volumes" -}}
- name: tmp
  emptyDir: {medium: Memory, sizeLimit: 16Mi}
- name: secrets
  secret:
    secretName: {{ include "rwg.secretName" . }}
    defaultMode: 0440
- name: internal-tls
  secret:
    secretName: {{ include "rwg.internalTlsName" . }}
    defaultMode: 0440
{{- include "rwg.redisVolumes" . }}
{{- end -}}

{{- define "rwg.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: secrets, mountPath: /etc/rwg/secrets, readOnly: true}
- {name: internal-tls, mountPath: /etc/rwg/internal, readOnly: true}
{{- include "rwg.redisVolumeMounts" . }}
{{- end -}}

{{/* Redis: the volumes, mounts and flags of every service that reaches it. */}}
{{- define "rwg.redisVolumes" -}}
{{- with include "rwg.redisPasswordSecret" . }}
- name: redis-password
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items: [{key: {{ include "rwg.redisPasswordKey" $ }}, path: password}]
{{- end }}
{{- if include "rwg.redisTls" . }}
{{- with .Values.redis.external.tls }}
{{- if .caSecret.name }}
- name: redis-tls-ca
  secret:
    secretName: {{ .caSecret.name }}
    defaultMode: 0440
    items: [{key: {{ .caSecret.key | default "ca.crt" }}, path: ca.crt}]
{{- end }}
{{- if .clientSecret }}
- name: redis-tls-client
  secret:
    secretName: {{ .clientSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "rwg.redisVolumeMounts" -}}
{{- if include "rwg.redisPasswordSecret" . }}
- {name: redis-password, mountPath: /etc/rwg/redis, readOnly: true}
{{- end }}
{{- if include "rwg.redisTls" . }}
{{- if .Values.redis.external.tls.caSecret.name }}
- {name: redis-tls-ca, mountPath: /etc/rwg/redis-tls/ca, readOnly: true}
{{- end }}
{{- if .Values.redis.external.tls.clientSecret }}
- {name: redis-tls-client, mountPath: /etc/rwg/redis-tls/client, readOnly: true}
{{- end }}
{{- end }}
{{- end -}}

{{- define "rwg.redisArgs" -}}
{{- if include "rwg.redisSentinel" . }}
- --redis-sentinels={{ include "rwg.sentinelHosts" . }}
- --redis-master-name={{ .Values.redis.sentinel.masterName }}
{{- if include "rwg.redisPasswordSecret" . }}
- --redis-sentinel-password-file=/etc/rwg/redis/password
{{- end }}
{{- else }}
- --redis-address={{ include "rwg.redisAddress" . }}
{{- end }}
{{- if include "rwg.redisPasswordSecret" . }}
- --redis-password-file=/etc/rwg/redis/password
{{- end }}
{{- if include "rwg.redisTls" . }}
- --redis-tls
{{- with .Values.redis.external.tls }}
{{- if .caSecret.name }}
- --redis-ca-file=/etc/rwg/redis-tls/ca/ca.crt
{{- end }}
{{- if .clientSecret }}
- --redis-cert-file=/etc/rwg/redis-tls/client/tls.crt
- --redis-key-file=/etc/rwg/redis-tls/client/tls.key
{{- end }}
{{- if .serverName }}
- --redis-tls-server-name={{ .serverName }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Flags every service takes. */}}
{{- define "rwg.commonArgs" -}}
- --tls-cert-file=/etc/rwg/internal/tls.crt
- --tls-key-file=/etc/rwg/internal/tls.key
- --secret-key-file=/etc/rwg/secrets/secret-key
{{ include "rwg.redisArgs" . }}
{{- end -}}

{{/* Probes: readiness asks grpc.health.v1 with the image's rwgctl (RWG_SERVER, RWG_CA_CERT
     from the environment); liveness is the gRPC port accepting connections. */}}
{{- define "rwg.probes" -}}
readinessProbe:
  exec:
    command: [/usr/local/bin/rwgctl, --timeout, "4", health]
  initialDelaySeconds: 2
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
livenessProbe:
  tcpSocket:
    port: {{ .port }}
  initialDelaySeconds: 10
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/* Topology spread over nodes for a component. */}}
{{- define "rwg.topologySpread" -}}
{{- if .ctx.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .ctx.Values.topologySpread.maxSkew }}
    topologyKey: {{ .ctx.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ .ctx.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "rwg.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* Scheduling values of a component: (dict "v" .Values.control) */}}
{{- define "rwg.scheduling" -}}
{{- with .v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The PodDisruptionBudget API of this cluster. */}}
{{- define "rwg.pdbApiVersion" -}}
{{- if or (.Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) -}}policy/v1{{- else -}}policy/v1beta1{{- end -}}
{{- end -}}

{{/* The ICP's CIDRs for the NetworkPolicies. */}}
{{- define "rwg.icpCidrs" -}}
{{- if .Values.icp.cidrs -}}
{{- toJson .Values.icp.cidrs -}}
{{- else if regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" .Values.icp.host -}}
{{- toJson (list (printf "%s/32" .Values.icp.host)) -}}
{{- else -}}
["0.0.0.0/0"]
{{- end -}}
{{- end -}}

{{/* The SIP/HTTPS Service port fields for the exposure type. */}}
{{- define "rwg.nodePort" -}}
{{- if and (eq .ctx.Values.expose.type "NodePort") (not .ctx.Values.expose.hostNetwork) }}
nodePort: {{ .port }}
{{- end }}
{{- end -}}

{{- define "rwg.exposeSpec" -}}
{{- if .Values.expose.hostNetwork }}
type: ClusterIP
{{- else }}
type: {{ .Values.expose.type }}
{{- if ne .Values.expose.type "ClusterIP" }}
externalTrafficPolicy: {{ .Values.expose.externalTrafficPolicy }}
{{- end }}
{{- with .Values.expose.externalIPs }}
externalIPs: {{ toJson . }}
{{- end }}
{{- if eq .Values.expose.type "LoadBalancer" }}
{{- with .Values.expose.loadBalancerIP }}
loadBalancerIP: {{ . }}
{{- end }}
{{- with .Values.expose.loadBalancerSourceRanges }}
loadBalancerSourceRanges: {{ toJson . }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Host network for the components phones reach (expose.hostNetwork): one pod per node. */}}
{{- define "rwg.hostNetwork" -}}
{{- if .ctx.Values.expose.hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- if not .v.affinity }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels: {{- include "rwg.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pods restart when the secrets they are given change: the Secrets named in values, or the
     generated ones' settings (generated contents stay the same across upgrades). */}}
{{- define "rwg.secretsChecksum" -}}
{{- toJson (list .Values.secrets .Values.tls.public.existingSecret .Values.tls.internal.existingSecret .Values.redis.auth .Values.redis.external.passwordSecret .Values.redis.external.tls) | sha256sum | trunc 16 -}}
{{- end -}}
