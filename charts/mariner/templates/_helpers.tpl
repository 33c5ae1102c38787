{{/* Names: <release>-mariner, or the release name when it already says mariner. */}}
{{- define "mariner.fullname" -}}
{{- if contains "mariner" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-mariner" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mariner.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: mariner
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "mariner.selectorLabels" -}}
app.kubernetes.io/name: mariner
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A pod's labels: its selector labels and the chart's, each once. */}}
{{- define "mariner.podLabels" -}}
{{ include "mariner.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/part-of: mariner
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{/* The image by tag: the control-plane target's is <tag>-control-plane, the full (agent-local) one's <tag>. */}}
{{- define "mariner.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if eq (.Values.image.target | default "control-plane") "control-plane" -}}
{{- $tag = printf "%s-control-plane" $tag -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/*
The control-plane components and the ports each serves (bin/serve.ts): the first port carries the
component's traffic; sessions serves its subgraph on the next port (8081) and its peer endpoint on 8090
(not listed: it is not part of its Service), where inference and jobs reach the agents' tunnels that end
in it. 9090 is every component's operations port (/healthz, /readyz, /metrics).
*/}}
{{- define "mariner.components" -}}
gateway: [{name: http, port: 8080}]
users: [{name: graphql, port: 8080}]
rbac: [{name: graphql, port: 8080}]
files: [{name: graphql, port: 8080}]
models: [{name: graphql, port: 8080}]
clusters: [{name: graphql, port: 8080}]
sessions: [{name: http, port: 8080}, {name: sessions, port: 8081}]
inference: [{name: graphql, port: 8080}]
jobs: [{name: graphql, port: 8080}]
vectorstores: [{name: graphql, port: 8080}]
batches: [{name: graphql, port: 8080}]
responses: [{name: graphql, port: 8080}]
audit: [{name: graphql, port: 8080}]
{{- end -}}

{{/* Where each subgraph runs, and the gateway, as the components reach them inside the cluster. */}}
{{- define "mariner.serviceUrls" -}}
{{- $svc := printf "%s-%%s.%s.svc" (include "mariner.fullname" .) .Release.Namespace -}}
MARINER_SUBGRAPH_USERS_URL: {{ printf "http://%s:8080/graphql" (printf $svc "users") }}
MARINER_SUBGRAPH_RBAC_URL: {{ printf "http://%s:8080/graphql" (printf $svc "rbac") }}
MARINER_SUBGRAPH_FILES_URL: {{ printf "http://%s:8080/graphql" (printf $svc "files") }}
MARINER_SUBGRAPH_MODELS_URL: {{ printf "http://%s:8080/graphql" (printf $svc "models") }}
MARINER_SUBGRAPH_CLUSTERS_URL: {{ printf "http://%s:8080/graphql" (printf $svc "clusters") }}
MARINER_SUBGRAPH_SESSIONS_URL: {{ printf "http://%s:8081/graphql" (printf $svc "sessions") }}
MARINER_SUBGRAPH_INFERENCE_URL: {{ printf "http://%s:8080/graphql" (printf $svc "inference") }}
MARINER_SUBGRAPH_JOBS_URL: {{ printf "http://%s:8080/graphql" (printf $svc "jobs") }}
MARINER_SUBGRAPH_VECTORSTORES_URL: {{ printf "http://%s:8080/graphql" (printf $svc "vectorstores") }}
MARINER_SUBGRAPH_BATCHES_URL: {{ printf "http://%s:8080/graphql" (printf $svc "batches") }}
MARINER_SUBGRAPH_RESPONSES_URL: {{ printf "http://%s:8080/graphql" (printf $svc "responses") }}
MARINER_SUBGRAPH_AUDIT_URL: {{ printf "http://%s:8080/graphql" (printf $svc "audit") }}
MARINER_GATEWAY_URL: {{ printf "http://%s:8080/graphql" (printf $svc "gateway") }}
{{- end -}}

{{/*
One component's settings: controlPlaneDefaults overlaid key by key with controlPlane.<name>, one
level deep for podDisruptionBudget and autoscaling. (Sprig's merge functions treat false and 0 as
unset, so `enabled: false` could not turn a default off.)
*/}}
{{- define "mariner.componentValues" -}}
{{- $defaults := .root.Values.controlPlaneDefaults -}}
{{- $over := index .root.Values.controlPlane .component | default dict -}}
{{- $out := dict -}}
{{- range $key, $value := $defaults }}{{ $_ := set $out $key $value }}{{ end -}}
{{- range $key, $value := $over -}}
{{- if and (has $key (list "podDisruptionBudget" "autoscaling")) (kindIs "map" $value) -}}
{{- $nested := dict -}}
{{- range $k, $v := (index $defaults $key | default dict) }}{{ $_ := set $nested $k $v }}{{ end -}}
{{- range $k, $v := $value }}{{ $_ := set $nested $k $v }}{{ end -}}
{{- $_ := set $out $key $nested -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The S3 settings shared by the control plane's config file and the agent's environment. */}}
{{- define "mariner.objectStoreSettings" -}}
{{- $s3 := .Values.global.objectStore.s3 -}}
MARINER_OBJECT_STORE: s3
MARINER_S3_BUCKET: {{ $s3.bucket | quote }}
MARINER_S3_REGION: {{ $s3.region | default "us-east-1" | quote }}
MARINER_S3_PREFIX: {{ $s3.prefix | default "mariner" | quote }}
MARINER_S3_CREATE_BUCKET: {{ $s3.createBucket | default "auto" | quote }}
{{- if .Values.trial.minio.enabled }}
MARINER_S3_FORCE_PATH_STYLE: "true"
MARINER_S3_ENDPOINT: {{ printf "http://%s-minio.%s.svc:9000" (include "mariner.fullname" .) .Release.Namespace | quote }}
{{- else }}
MARINER_S3_FORCE_PATH_STYLE: {{ $s3.forcePathStyle | default false | quote }}
{{- if $s3.endpoint }}
MARINER_S3_ENDPOINT: {{ $s3.endpoint | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The PostgreSQL URL's Secret: the trial database's when it is on, else global.database.secretRef (required). */}}
{{- define "mariner.databaseSecretName" -}}
{{- if .Values.trial.postgresql.enabled -}}
{{- printf "%s-trial-postgresql" (include "mariner.fullname" .) -}}
{{- else -}}
{{- include "mariner.requiredSecretName" (dict "ref" .Values.global.database.secretRef "path" "global.database.secretRef" "what" "holding the PostgreSQL URL") -}}
{{- end -}}
{{- end -}}
{{- define "mariner.databaseSecretKey" -}}
{{- ternary "url" .Values.global.database.secretRef.key .Values.trial.postgresql.enabled -}}
{{- end -}}

{{/* env entries: the S3 access key pair from its Secret, when one is named. */}}
{{- define "mariner.objectStoreCredentialsEnv" -}}
{{- $creds := .Values.global.objectStore.credentialsSecretRef | default dict -}}
{{- if .Values.trial.minio.enabled -}}
{{- $creds = dict "name" (printf "%s-trial-minio" (include "mariner.fullname" .)) "accessKeyIdKey" "accessKeyId" "secretAccessKeyKey" "secretAccessKey" -}}
{{- end -}}
{{- if $creds.name -}}
- name: MARINER_S3_ACCESS_KEY_ID
  valueFrom: { secretKeyRef: { name: {{ $creds.name | quote }}, key: {{ $creds.accessKeyIdKey | default "accessKeyId" | quote }} } }
- name: MARINER_S3_SECRET_ACCESS_KEY
  valueFrom: { secretKeyRef: { name: {{ $creds.name | quote }}, key: {{ $creds.secretAccessKeyKey | default "secretAccessKey" | quote }} } }
{{- end }}
{{- end -}}

{{/* The pod and container security settings every Mariner container runs with (the image's user 1000). */}}
{{- define "mariner.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{- define "mariner.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: { drop: [ALL] }
{{- end -}}

{{/* A Secret reference the templates need: fails rendering with the value's path when it is empty. */}}
{{- define "mariner.requiredSecretName" -}}
{{- $ref := .ref | default dict -}}
{{- required (printf "%s.name is required: the name of an existing Secret %s (see charts/README.md)" .path .what) $ref.name -}}
{{- end -}}

{{/*
Settings as env entries, from a dict of name → value: only the values that are set (not null, not an
empty string, map or list), so an unset one keeps its default in code (lib/config.ts). Integers as
integers (Helm reads numbers as floats), maps and lists as JSON.
*/}}
{{- define "mariner.settingsEnv" -}}
{{- range $name, $value := . }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) (and (or (kindIs "map" $value) (kindIs "slice" $value)) (empty $value))) }}
- name: {{ $name }}
  value: {{ include "mariner.settingValue" $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "mariner.settingValue" -}}
{{- if or (kindIs "map" .) (kindIs "slice" .) -}}
{{- toJson . -}}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/*
The settings of one control-plane component that only it reads, as env entries on its Deployment (a
change rolls that Deployment alone): (dict "root" $ "component" "inference"). inference: rate limits,
usage, waits; jobs: dispatch and image presets; the gateway holds the graphql-ws subscriptions;
vectorstores the vector index.
*/}}
{{- define "mariner.componentSettingsEnv" -}}
{{- $g := .root.Values.global -}}
{{- $settings := dict -}}
{{- if eq .component "inference" -}}
{{- $inference := $g.inference | default dict -}}
{{- $rateLimits := $inference.rateLimits | default dict -}}
{{- $usage := $inference.usage | default dict -}}
{{- $settings = dict
  "MARINER_RATE_LIMIT_RPM" $rateLimits.requestsPerMinute
  "MARINER_RATE_LIMIT_TPM" $rateLimits.tokensPerMinute
  "MARINER_USAGE_FLUSH_MS" $usage.flushIntervalMs
  "MARINER_USAGE_RETENTION_DAYS" $usage.retentionDays
  "MARINER_INFERENCE_WAIT_SECONDS" $inference.requestWaitSeconds
  "MARINER_RUNTIME_FRESH_SECONDS" $inference.runtimeFreshSeconds
  "MARINER_MODEL_PRICES" $inference.modelPrices
-}}
{{- else if eq .component "jobs" -}}
{{- $jobs := $g.jobs | default dict -}}
{{- $settings = dict
  "MARINER_JOB_DISPATCH_INTERVAL_MS" $jobs.dispatchIntervalMs
  "MARINER_JOB_RESCHEDULE_AFTER_SECONDS" $jobs.rescheduleAfterSeconds
  "MARINER_BATCH_IMAGES" $jobs.batchImages
  "MARINER_NOTEBOOK_IMAGES" $jobs.notebookImages
-}}
{{- else if eq .component "gateway" -}}
{{- $ws := $g.subscriptions | default dict -}}
{{- $settings = dict
  "MARINER_WS_MAX_PER_CONNECTION" $ws.maxPerConnection
  "MARINER_WS_MAX_PER_USER" $ws.maxPerUser
  "MARINER_WS_MAX_QUEUED_EVENTS" $ws.maxQueuedEvents
  "MARINER_WS_REVALIDATE_MS" $ws.revalidateIntervalMs
  "MARINER_WS_INIT_TIMEOUT_MS" $ws.initTimeoutMs
-}}
{{- else if eq .component "vectorstores" -}}
{{- $vs := $g.vectorStores | default dict -}}
{{- $milvus := $vs.milvus | default dict -}}
{{- $settings = dict
  "MARINER_VECTOR_INDEX" $vs.index
  "MARINER_VECTOR_METRIC" $vs.metric
  "MARINER_EMBEDDING_MODEL" $vs.embeddingModel
  "MARINER_EMBEDDING_BATCH_SIZE" $vs.embeddingBatchSize
  "MARINER_INGESTION_CONCURRENCY" $vs.ingestionConcurrency
  "MARINER_INGESTION_LEASE_SECONDS" $vs.ingestionLeaseSeconds
-}}
{{- if eq $vs.index "milvus" -}}
{{- $_ := set $settings "MARINER_MILVUS_ADDRESS" (required "global.vectorStores.milvus.address is required with index milvus: Milvus' gRPC host:port" $milvus.address) -}}
{{- $_ := set $settings "MARINER_MILVUS_SSL" (toString ($milvus.ssl | default false)) -}}
{{- $_ := set $settings "MARINER_MILVUS_DATABASE" $milvus.database -}}
{{- end -}}
{{- end -}}
{{- include "mariner.settingsEnv" $settings -}}
{{- end -}}

{{/*
A Secret value the chart generates once: the value already in the cluster (Helm's lookup), else a new
random one, so an upgrade keeps it. (dict "root" $ "name" "<secret>" "key" "<key>" "value" "<new value>")
*/}}
{{- define "mariner.generatedValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- .value -}}
{{- end -}}
{{- end -}}

{{/* The Secret names the control plane and the agent read: given ones, else the chart's generated ones. */}}
{{- define "mariner.internalTokenSecret" -}}
{{- .Values.global.internalToken.secretRef.name | default (printf "%s-internal-token" (include "mariner.fullname" .)) -}}
{{- end -}}
{{- define "mariner.adminApiKeySecret" -}}
{{- .Values.global.adminApiKey.secretRef.name | default (printf "%s-admin-api-key" (include "mariner.fullname" .)) -}}
{{- end -}}
{{- define "mariner.registrationSecret" -}}
{{- .Values.worker.registrationKeySecretRef.name | default (printf "%s-registration" (include "mariner.fullname" .)) -}}
{{- end -}}

{{/* The namespace inference runtimes run in. */}}
{{- define "mariner.runtimesNamespace" -}}
{{- .Values.worker.runtimes.namespace | default .Release.Namespace -}}
{{- end -}}

{{/*
Namespaces no project may be assigned (MARINER_RESERVED_NAMESPACES): this release's, the runtimes', the
GPU operator's when the agent writes there, and global.reservedNamespaces (a worker cluster's own, when
the control plane runs elsewhere).
*/}}
{{- define "mariner.reservedNamespaces" -}}
{{- $names := list .Release.Namespace (include "mariner.runtimesNamespace" .) -}}
{{- if .Values.worker.gpuOperator.manageDevicePluginConfig }}{{ $names = append $names .Values.worker.gpuOperator.namespace }}{{ end -}}
{{- $names = concat $names .Values.global.reservedNamespaces -}}
{{- $names | uniq | join "," -}}
{{- end -}}

{{/* The container securityContext, overridable as a whole (OpenShift assigns its own user ids). */}}
{{- define "mariner.podSecurityContextFor" -}}
{{- if .Values.podSecurityContext -}}
{{- toYaml .Values.podSecurityContext -}}
{{- else -}}
{{- include "mariner.podSecurityContext" . -}}
{{- end -}}
{{- end -}}
{{- define "mariner.containerSecurityContextFor" -}}
{{- if .Values.containerSecurityContext -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- else -}}
{{- include "mariner.containerSecurityContext" . -}}
{{- end -}}
{{- end -}}

{{/* The image by digest when one is given (repository@sha256:...), else by tag. */}}
{{- define "mariner.imageRef" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- include "mariner.image" . -}}
{{- end -}}
{{- end -}}
