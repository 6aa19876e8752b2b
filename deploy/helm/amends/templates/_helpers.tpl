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

{{/* "true" when a secret value is empty or a placeholder someone forgot to replace. */}}
{{- define "amends.placeholder" -}}
{{- if regexMatch `(?i)^\s*(|change[-_ .]?(me|it|this)\S*|replace[-_ .]?me\S*|placeholder|secret|password|passw0rd|not-a-secret|example|dummy|default|test|todo|tbd|x+|\*+|<.*>|\$\{.*\}|\.\.\.)\s*$` (toString .) -}}true{{- end -}}
{{- end -}}

{{/* Fails on an empty, placeholder or too short secret: (dict "what" "x.y" "value" $v "min" 32) */}}
{{- define "amends.requireSecret" -}}
{{- $v := toString .value -}}
{{- if include "amends.placeholder" $v -}}
{{- fail (printf "%s is empty or a placeholder: give the real secret (or use secrets.existingSecret)" .what) -}}
{{- end -}}
{{- if and .min (lt (len $v) (int .min)) -}}
{{- fail (printf "%s is shorter than %d characters: use a random secret" .what (int .min)) -}}
{{- end -}}
{{- end -}}

{{/* The chart refuses to render without operator authentication and customer-link keys, and
with a secret that is empty or a placeholder. A Secret made elsewhere is checked on install,
when the cluster can be asked for it. */}}
{{- define "amends.validate" -}}
{{- $a := .Values.auth -}}
{{- $links := .Values.customerLinks -}}
{{- $svc := .Values.services -}}
{{- if .Values.secrets.existingSecret -}}
{{- $found := lookup "v1" "Secret" .Release.Namespace .Values.secrets.existingSecret -}}
{{- if $found -}}
{{- $data := $found.data | default dict -}}
{{- range (list "AMENDS_CUSTOMER_LINK_KEYS" "AMENDS_ERASURE_PSEUDONYM_KEY") -}}
{{- if not (hasKey $data .) -}}
{{- fail (printf "Secret %s has no %s" $.Values.secrets.existingSecret .) -}}
{{- end -}}
{{- end -}}
{{- if not (or $a.jwksUrl (hasKey $data "AMENDS_AUTH_API_KEYS") (hasKey $data "AMENDS_AUTH_JWT_KEY")) -}}
{{- fail (printf "Secret %s has neither AMENDS_AUTH_API_KEYS nor AMENDS_AUTH_JWT_KEY, and auth.jwksUrl is empty: every operator endpoint would answer 401" .Values.secrets.existingSecret) -}}
{{- end -}}
{{- range $key, $value := $data -}}
{{- include "amends.requireSecret" (dict "what" (printf "Secret key %s" $key) "value" (b64dec $value)) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- if not (or $a.jwksUrl $a.jwtKey $a.apiKeys) -}}
{{- fail "auth: give auth.jwksUrl (the OIDC issuer's keys), auth.jwtKey or auth.apiKeys; without one every operator endpoint answers 401" -}}
{{- end -}}
{{- if not $links.keys -}}
{{- fail "customerLinks.keys is required: key id -> a random key of at least 32 characters" -}}
{{- end -}}
{{- range $kid, $key := $links.keys -}}
{{- include "amends.requireSecret" (dict "what" (printf "customerLinks.keys.%s" $kid) "value" $key "min" 32) -}}
{{- end -}}
{{- include "amends.requireSecret" (dict "what" "erasure.pseudonymKey" "value" .Values.erasure.pseudonymKey "min" 32) -}}
{{- with $a.jwtKey -}}
{{- if not (hasPrefix "-----BEGIN" (trim .)) -}}
{{- include "amends.requireSecret" (dict "what" "auth.jwtKey" "value" . "min" 32) -}}
{{- end -}}
{{- end -}}
{{- range $i, $key := $a.apiKeys -}}
{{- if not (and $key.name (regexMatch "^[0-9a-f]{64}$" (toString $key.sha256)) $key.roles) -}}
{{- fail (printf "auth.apiKeys[%d]: give name, sha256 (64 hex digits: the key's SHA-256, never the key) and roles" $i) -}}
{{- end -}}
{{- range $key.roles -}}
{{- if not (has (toString .) (list "viewer" "support" "reviewer" "admin")) -}}
{{- fail (printf "auth.apiKeys[%d]: role %q: use viewer, support, reviewer or admin" $i (toString .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled .Values.kafka.sasl.password -}}{{- /* empty: secret.yaml's `required` says so */ -}}
{{- include "amends.requireSecret" (dict "what" "kafka.sasl.password" "value" .Values.kafka.sasl.password) -}}
{{- end -}}
{{- range $source, $secret := $svc.intake.hmacSecrets -}}
{{- range (kindIs "slice" $secret | ternary $secret (list $secret)) -}}
{{- include "amends.requireSecret" (dict "what" (printf "services.intake.hmacSecrets.%s" $source) "value" . "min" 16) -}}
{{- end -}}
{{- end -}}
{{- if $svc.fulfilment.paymentGateway.url -}}
{{- include "amends.requireSecret" (dict "what" "services.fulfilment.paymentGateway.apiKey" "value" $svc.fulfilment.paymentGateway.apiKey) -}}
{{- end -}}
{{- if $svc.fulfilment.smtp.username -}}
{{- include "amends.requireSecret" (dict "what" "services.fulfilment.smtp.password" "value" $svc.fulfilment.smtp.password) -}}
{{- end -}}
{{- end -}}
{{- if and $links.kid (not (hasKey ($links.keys | default dict) $links.kid)) (not .Values.secrets.existingSecret) -}}
{{- fail (printf "customerLinks.kid %q is not among customerLinks.keys" $links.kid) -}}
{{- end -}}
{{- end -}}
