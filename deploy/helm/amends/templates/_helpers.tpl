{{/* Names, labels and the small computations every template shares. */}}

{{- define "amends.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "amends.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A service's resource name: (dict "root" $ "name" "intake") */}}
{{- define "amends.componentName" -}}
{{- printf "%s-%s" (include "amends.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "amends.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "amends.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amends.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "amends.labels" -}}
helm.sh/chart: {{ include "amends.chart" . }}
{{ include "amends.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: amends
{{- end -}}

{{/* (dict "root" $ "name" "intake") */}}
{{- define "amends.componentSelectorLabels" -}}
{{ include "amends.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "amends.componentLabels" -}}
{{ include "amends.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "amends.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "amends.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "amends.secretName" -}}
{{- default (include "amends.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "amends.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Kafka security.protocol that the TLS and SASL switches add up to. */}}
{{- define "amends.kafkaSecurityProtocol" -}}
{{- $k := .Values.kafka -}}
{{- if and $k.tls.enabled $k.sasl.enabled -}}SASL_SSL
{{- else if $k.sasl.enabled -}}SASL_PLAINTEXT
{{- else if $k.tls.enabled -}}SSL
{{- else -}}PLAINTEXT
{{- end -}}
{{- end -}}

{{/* KEDA's name for the SASL mechanism: SCRAM-SHA-512 -> scram_sha512, PLAIN -> plaintext. */}}
{{- define "amends.kedaSasl" -}}
{{- $m := upper .Values.kafka.sasl.mechanism -}}
{{- if eq $m "PLAIN" -}}plaintext
{{- else if eq $m "SCRAM-SHA-256" -}}scram_sha256
{{- else if eq $m "SCRAM-SHA-512" -}}scram_sha512
{{- else -}}{{ fail (printf "kafka.sasl.mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" .Values.kafka.sasl.mechanism) }}
{{- end -}}
{{- end -}}

{{- define "amends.kafkaCaDir" -}}/etc/amends/kafka-ca{{- end -}}
{{- define "amends.policyDir" -}}/etc/amends/policy{{- end -}}

{{/* ConfigMap entries from a map of settings fields: (dict "prefix" "AMENDS_" "settings" $map) */}}
{{- define "amends.settingsEnv" -}}
{{- range $key, $value := .settings }}
{{- if not (regexMatch "^[a-z][a-z0-9_]*$" $key) }}
{{- fail (printf "settings key %q: use the settings field's name (lower_snake_case)" $key) }}
{{- end }}
{{ printf "%s%s" $.prefix (upper $key) }}: {{ if or (kindIs "map" $value) (kindIs "slice" $value) }}{{ toJson $value | quote }}{{ else }}{{ toString $value | quote }}{{ end }}
{{- end }}
{{- end -}}

{{/* A Secret key as an environment variable: (dict "root" $ "key" "AMENDS_..." "optional" bool) */}}
{{- define "amends.secretEnv" -}}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "amends.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}
