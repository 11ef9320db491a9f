{{/* The release's name prefix, at most 40 characters so that suffixes fit. */}}
{{- define "firehose.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "firehose.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component; call with (list $ "component"). */}}
{{- define "firehose.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "firehose.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Batch.max_events by destination type, when a connector sets none: the
     same defaults as connectors/destinations (a test holds them equal). */}}
{{- define "firehose.maxEventsDefaults" -}}
file: 100000
s3: 100000
http: 100
kafka: 500
kinesis: 500
pubsub: 500
iceberg: 1000000
{{- end -}}

{{/* The Secret a role's environment comes from; call with (list $ "role" "name override"). */}}
{{- define "firehose.secretName" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- $existing := index . 2 -}}
{{- if $existing -}}{{ $existing }}{{- else -}}{{ include "firehose.fullname" $ }}-{{ $role }}{{- end -}}
{{- end -}}

{{/* The pod spec every process shares; call with (dict "root" $ "component"
     "processor" "args" (list ...) "secret" "name" "secretOptional" true). */}}
{{- define "firehose.podSpec" -}}
{{- $ := .root -}}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ add $.Values.shutdownTimeoutSeconds 15 }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
containers:
  - name: firehose
    image: {{ include "firehose.image" $ }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    args:
      - run
      - -c
      - /etc/firehose/firehose.yaml
      - --listen
      - 0.0.0.0:{{ $.Values.ports.http }}
      - --admin-listen
      - 0.0.0.0:{{ $.Values.ports.admin }}
      - --shutdown-timeout
      - {{ printf "%ds" (int $.Values.shutdownTimeoutSeconds) }}
      - --log-format
      - json
      {{- range .args }}
      - {{ . | quote }}
      {{- end }}
    env:
      - name: POD_NAME
        valueFrom:
          fieldRef: {fieldPath: metadata.name}
    envFrom:
      - secretRef:
          name: {{ include "firehose.secretName" (list $ "common" $.Values.existingSecrets.common) }}
          optional: {{ not $.Values.existingSecrets.common }}
      - secretRef:
          name: {{ .secret }}
          optional: {{ .secretOptional }}
    ports:
      - {name: http, containerPort: {{ $.Values.ports.http }}, protocol: TCP}
      - {name: admin, containerPort: {{ $.Values.ports.admin }}, protocol: TCP}
    readinessProbe:
      httpGet: {path: /readyz, port: admin}
      periodSeconds: 5
      failureThreshold: 3
    livenessProbe:
      # /healthz fails when a worker's loop made no progress for
      # api.stall_timeout (default 2m), not merely when it is busy.
      httpGet: {path: /healthz, port: admin}
      periodSeconds: 10
      failureThreshold: 3
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- toYaml $.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: config, mountPath: /etc/firehose, readOnly: true}
volumes:
  - name: config
    configMap:
      name: {{ include "firehose.fullname" $ }}-config
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "firehose.podAnnotations" -}}
checksum/config: {{ toYaml .Values.config | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
