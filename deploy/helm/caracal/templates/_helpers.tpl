{{- define "caracal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "caracal.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "caracal.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "caracal.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Environment shared by every caracal container. */}}
{{- define "caracal.env" -}}
- name: CARACAL_HOME
  value: /var/lib/caracal
- name: CARACAL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | required "database.existingSecret is required" }}
      key: {{ .Values.database.urlKey }}
{{- range .Values.providerKeys }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
      optional: {{ .optional | default false }}
{{- end }}
{{- end -}}

{{/*
The pod's grace period must cover the preStop sleep and then the whole
drain: the kubelet kills the container when it runs out, and what is still
in flight is then left to the expiry sweep of another process.
*/}}
{{- define "caracal.checkGrace" -}}
{{- $sleep := int .preStopSleepSeconds -}}
{{- $drain := int .shutdownTimeoutSeconds -}}
{{- $grace := int .terminationGracePeriodSeconds -}}
{{- if lt $sleep 0 -}}
{{- fail (printf "preStopSleepSeconds is %d: it must be 0 or more" $sleep) -}}
{{- end -}}
{{- if le $grace (add $sleep $drain) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than preStopSleepSeconds (%d) + shutdownTimeoutSeconds (%d): the pod would be killed before caracal finishes draining" $grace $sleep $drain) -}}
{{- end -}}
{{- end -}}

{{/*
A serving pod. Arguments: dict root, role (signer|replica), component
(proxy|mcp), port, sign (auto|never), replicas, resources, extraArgs.
*/}}
{{- define "caracal.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- include "caracal.checkGrace" $v -}}
{{- $scheme := ternary "HTTPS" "HTTP" (ne $v.tls.existingSecret "") -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "caracal.fullname" $root }}-{{ .name }}
  labels:
    {{- include "caracal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    caracal.dev/role: {{ .role }}
spec:
  replicas: {{ .replicas }}
  {{- if eq .role "signer" }}
  # One signer at a time: the old pod stops before the new one starts.
  strategy:
    type: Recreate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  {{- end }}
  selector:
    matchLabels:
      {{- include "caracal.selector" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
      caracal.dev/role: {{ .role }}
  template:
    metadata:
      labels:
        {{- include "caracal.selector" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        caracal.dev/role: {{ .role }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if eq .role "signer" }}
      initContainers:
        # caracal refuses a key file others may read; Secret volumes are
        # group-readable under fsGroup, so copy the keys with mode 0600.
        - name: signing-keys
          image: {{ $v.signer.keyInit.image }}
          command: ["sh", "-c", "for f in /secret/*.key; do install -m 0600 \"$f\" /keys/; done; cp /secret/*.pub /keys/ 2>/dev/null || true"]
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - {name: signing-secret, mountPath: /secret, readOnly: true}
            - {name: keys, mountPath: /keys}
      {{- end }}
      containers:
        - name: caracal
          image: {{ include "caracal.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - {{ .component }}
            - --listen
            - 0.0.0.0:{{ .port }}
            - --shutdown-timeout
            - {{ printf "%ds" (int $v.shutdownTimeoutSeconds) }}
            {{- if $v.tls.existingSecret }}
            - --tls-cert
            - /etc/caracal/tls/tls.crt
            - --tls-key
            - /etc/caracal/tls/tls.key
            {{- end }}
            {{- range .extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            {{- include "caracal.env" $root | nindent 12 }}
            - name: CARACAL_CONFIG
              value: /etc/caracal/config.yaml
            - name: CARACAL_MERKLE_SIGN
              value: {{ .sign }}
          {{- if gt (int $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep: {seconds: {{ int $v.preStopSleepSeconds }}}
          {{- end }}
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          livenessProbe:
            httpGet: {path: {{ $v.probes.liveness.path }}, port: http, scheme: {{ $scheme }}}
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
          readinessProbe:
            httpGet: {path: {{ $v.probes.readiness.path }}, port: http, scheme: {{ $scheme }}}
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - {name: home, mountPath: /var/lib/caracal}
            - {name: config, mountPath: /etc/caracal/config.yaml, subPath: config.yaml, readOnly: true}
            {{- if eq .role "signer" }}
            - {name: keys, mountPath: /var/lib/caracal/keys, readOnly: true}
            {{- end }}
            {{- if $v.tls.existingSecret }}
            - {name: tls, mountPath: /etc/caracal/tls, readOnly: true}
            {{- end }}
      volumes:
        - name: home
          emptyDir: {}
        - name: config
          configMap:
            name: {{ include "caracal.fullname" $root }}
        {{- if eq .role "signer" }}
        - name: keys
          emptyDir: {medium: Memory, sizeLimit: 1Mi}
        - name: signing-secret
          secret:
            secretName: {{ $v.signer.keysSecret }}
            defaultMode: 0440
        {{- end }}
        {{- if $v.tls.existingSecret }}
        - name: tls
          secret:
            secretName: {{ $v.tls.existingSecret }}
            defaultMode: 0440
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
