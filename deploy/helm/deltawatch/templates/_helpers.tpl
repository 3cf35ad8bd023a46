{{/* Names and labels. */}}
{{- define "deltawatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deltawatch.fullname" -}}
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

{{/* "<fullname>-<worker>", for (dict "root" $ "worker" "differ"). */}}
{{- define "deltawatch.workerName" -}}
{{- printf "%s-%s" (include "deltawatch.fullname" .root) .worker | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deltawatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "deltawatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
deltawatch.io/cluster: {{ .Values.cluster | quote }}
{{- end }}

{{/* Selector labels of one worker, for (dict "root" $ "worker" "differ"). */}}
{{- define "deltawatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deltawatch.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .worker }}
{{- end }}

{{- define "deltawatch.workerLabels" -}}
{{ include "deltawatch.labels" .root }}
app.kubernetes.io/component: {{ .worker }}
{{- end }}

{{- define "deltawatch.serviceAccountName" -}}
{{- $values := index .root.Values .worker }}
{{- if $values.serviceAccount.create }}
{{- default (include "deltawatch.workerName" .) $values.serviceAccount.name }}
{{- else }}
{{- default "default" $values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "deltawatch.image" -}}
{{- $values := index .root.Values .worker }}
{{- $repository := default (printf "%s/%s" .root.Values.image.repository .worker) $values.image.repository }}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) $values.image.tag }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{- define "deltawatch.secretKeyName" -}}
{{- default (printf "%s-secret-key" (include "deltawatch.fullname" .)) .Values.notifier.secretKey.existingSecret }}
{{- end }}

{{- define "deltawatch.leaseName" -}}
{{- default (printf "%s-watcher-%s" (include "deltawatch.fullname" .) .Values.cluster) .Values.watcher.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The plural of a kind as kubectl guesses it (UnsafeGuessKindToResource). */}}
{{- define "deltawatch.plural" -}}
{{- $kind := lower . }}
{{- if eq $kind "endpoints" }}endpoints
{{- else if hasSuffix "s" $kind }}{{ $kind }}es
{{- else if and (hasSuffix "y" $kind) (not (regexMatch "[aeiou]y$" $kind)) }}{{ trimSuffix "y" $kind }}ies
{{- else }}{{ $kind }}s
{{- end }}
{{- end }}

{{/* DELTAWATCH_RESOURCE_TYPES: "group/version/Kind" ("v1/Kind" for core), comma-separated. */}}
{{- define "deltawatch.resourceTypes" -}}
{{- $types := list }}
{{- range .Values.watcher.resourceTypes }}
{{- $types = append $types (printf "%s/%s" .apiVersion .kind) }}
{{- end }}
{{- join "," $types }}
{{- end }}

{{/* Env of every worker: CONTRACT §2 and §3. */}}
{{- define "deltawatch.commonEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
{{- if .Values.kafka.configSecret.name }}
- name: DELTAWATCH_KAFKA_CONFIG
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.configSecret.name }}
      key: {{ .Values.kafka.configSecret.key }}
{{- else }}
- name: DELTAWATCH_KAFKA_CONFIG
  value: {{ .Values.kafka.config | toJson | quote }}
{{- end }}
{{- with .Values.schemaRegistryUrl }}
- name: DELTAWATCH_SCHEMA_REGISTRY_URL
  value: {{ . | quote }}
{{- end }}
- name: DELTAWATCH_CLUSTER
  value: {{ .Values.cluster | quote }}
- name: DELTAWATCH_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: DELTAWATCH_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: DELTAWATCH_PARTITIONS
  value: {{ .Values.partitions | quote }}
- name: DELTAWATCH_APPLICATION_ID
  value: {{ .Values.applicationId | quote }}
- name: DELTAWATCH_HEARTBEAT_S
  value: {{ .Values.heartbeatS | quote }}
- name: DELTAWATCH_COMMANDS_TOPIC
  value: {{ .Values.topics.commands | quote }}
- name: DELTAWATCH_COMMAND_RESULTS_TOPIC
  value: {{ .Values.topics.commandResults | quote }}
- name: DELTAWATCH_SUBSCRIPTIONS_TOPIC
  value: {{ .Values.topics.subscriptions | quote }}
- name: DELTAWATCH_RESOURCE_EVENTS_TOPIC
  value: {{ .Values.topics.resourceEvents | quote }}
- name: DELTAWATCH_DELTAS_TOPIC
  value: {{ .Values.topics.deltas | quote }}
- name: DELTAWATCH_CPS_TOPIC
  value: {{ .Values.topics.cps | quote }}
- name: DELTAWATCH_DLQ_TOPIC
  value: {{ .Values.topics.dlq | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{/*
The pod template of one worker, for (dict "root" $ "worker" "differ"): security contexts, the
/tmp emptyDir, probes on the worker's port, resources, scheduling; the worker's own env comes
from the template "deltawatch.<worker>.env".
*/}}
{{- define "deltawatch.podTemplate" -}}
{{- $root := .root }}
{{- $values := index $root.Values .worker }}
metadata:
  labels:
    {{- include "deltawatch.workerLabels" . | nindent 4 }}
    {{- with $values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "deltawatch.serviceAccountName" . }}
  automountServiceAccountToken: {{ ne .worker "differ" }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
  containers:
    - name: {{ .worker }}
      image: {{ include "deltawatch.image" . | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ $values.httpPort }}
          protocol: TCP
      env:
        {{- include "deltawatch.commonEnv" $root | trim | nindent 8 }}
        - name: DELTAWATCH_HTTP_PORT
          value: {{ $values.httpPort | quote }}
        {{- include (printf "deltawatch.%s.env" .worker) $root | trim | nindent 8 }}
        {{- with $values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 3
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        initialDelaySeconds: 10
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 6
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 2
        failureThreshold: 90
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if and (eq .worker "differ") $values.state.enabled }}
        - name: state
          mountPath: {{ $values.state.mountPath }}
        {{- end }}
        {{- if and (eq .worker "watcher") $values.kubeconfigSecret.name }}
        - name: kubeconfig
          mountPath: /etc/deltawatch/kubeconfig
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if and (eq .worker "watcher") $values.kubeconfigSecret.name }}
    - name: kubeconfig
      secret:
        secretName: {{ $values.kubeconfigSecret.name }}
        defaultMode: 0400
    {{- end }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $values.affinity }}
  affinity:
    {{- toYaml $values.affinity | nindent 4 }}
  {{- else }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "deltawatch.selectorLabels" . | nindent 16 }}
  {{- end }}
{{- end }}

{{/* list+watch rules from a dict group -> resources (the watcher's kinds). */}}
{{- define "deltawatch.watcher.kindRules" -}}
{{- range $group := keys . | sortAlpha }}
- apiGroups: [{{ $group | quote }}]
  resources: {{ get $ $group | sortAlpha | toJson }}
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
