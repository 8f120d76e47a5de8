{{/* Labels every object of the release carries besides its own (not in selectors). */}}
{{- define "vpcnat.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vpcnat.image" -}}
{{ .repository }}:{{ .tag }}
{{- end -}}

{{/* The arguments install-cni shares between the init container and the cni-keeper. */}}
{{- define "vpcnat.installCNIArgs" -}}
- --plugin=/opt/vpcnat/bin/vpcnat
- --cni-bin-dir=/host/opt/cni/bin
- --cni-conf-dir=/host/etc/cni/net.d
- --gateway-namespace={{ .Values.namespace }}
- --state-dir=/run/vpcnat
{{- end -}}

{{/* Extra EnvVars; a value is always a string (--set env[0].value=6443 gives a number). */}}
{{- define "vpcnat.env" -}}
{{- range . }}
{{- if hasKey . "value" }}
- name: {{ .name }}
  value: {{ .value | toString | quote }}
{{- else }}
- {{ toYaml . | nindent 2 | trim }}
{{- end }}
{{- end }}
{{- end -}}
