{{/* Names and labels, as Helm's scaffold makes them. */}}
{{- define "extdns.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "extdns.fullname" -}}
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

{{- define "extdns.selectorLabels" -}}
app.kubernetes.io/name: {{ include "extdns.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "extdns.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "extdns.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "extdns.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "extdns.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: with serviceAccount.create false, name the ServiceAccount extdns runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
"1h30m", "90s", "5m" -> seconds. Fails naming `what` when the text is no such duration.
*/}}
{{- define "extdns.seconds" -}}
{{- $d := toString .d }}
{{- if regexMatch "^[0-9]+$" $d }}{{ $d }}
{{- else }}
{{- if not (regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $d) }}
{{- fail (printf "%s: %q is not a duration like 90s, 5m or 1h30m" .what $d) }}
{{- end }}
{{- $total := 0 }}
{{- range $part := regexFindAll "[0-9]+[hms]" $d -1 }}
{{- $n := atoi (regexFind "[0-9]+" $part) }}
{{- if hasSuffix "h" $part }}{{ $total = add $total (mul $n 3600) }}
{{- else if hasSuffix "m" $part }}{{ $total = add $total (mul $n 60) }}
{{- else }}{{ $total = add $total $n }}{{ end }}
{{- end }}
{{- $total }}
{{- end }}
{{- end }}

{{/*
The Secret a credentials file of external-dns's pod comes from: the extraVolumeMounts entry
whose mountPath holds .path (or whose subPath mount is .path) and its extraVolumes secret
volume, as JSON {name, key}; {} when no Secret volume holds the file.
*/}}
{{- define "extdns.secretFile" -}}
{{- $found := dict }}
{{- range $m := .v.extraVolumeMounts }}
{{- $mp := trimSuffix "/" (toString $m.mountPath) }}
{{- $rest := "" }}
{{- if $m.subPath }}
{{- if eq $mp $.path }}{{ $rest = toString $m.subPath }}{{ end }}
{{- else if hasPrefix (printf "%s/" $mp) $.path }}
{{- $rest = trimPrefix (printf "%s/" $mp) $.path }}
{{- end }}
{{- if $rest }}
{{- range $vol := $.v.extraVolumes }}
{{- if and (eq (toString $vol.name) (toString $m.name)) (dig "secret" "secretName" "" $vol) }}
{{- $key := $rest }}
{{- range $vol.secret.items }}{{ if eq (toString .path) $rest }}{{ $key = toString .key }}{{ end }}{{ end }}
{{- $found = dict "name" $vol.secret.secretName "key" $key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $found }}
{{- end }}

{{/*
The whole translation of external-dns's values into extdns's, as YAML:
  args:    the extdns container's arguments
  env:     its environment after the chart's own variables
  spec:    the ClusterDNSProvider's spec
  secrets: Secrets the chart creates for credentials given as plain values, {key: value}
Every value extdns has no meaning for fails here, naming what to use instead.
*/}}
{{- define "extdns.config" -}}
{{- $v := .Values }}
{{- $fullname := include "extdns.fullname" . }}

{{- /* Values of external-dns's chart that have no meaning for extdns. */}}
{{- if and $v.secretConfiguration (dig "enabled" false $v.secretConfiguration) }}
{{- fail "secretConfiguration: extdns reads provider credentials from Secrets itself; put them in a Secret of the release namespace and reference it (env CF_API_TOKEN / EXTERNAL_DNS_RFC2136_TSIG_SECRET / EXTERNAL_DNS_PDNS_API_KEY with valueFrom.secretKeyRef, or extdns.clusterDNSProvider.spec.route53.credentials.secretRef; azure.json or a Google service-account key: a Secret mounted with extraVolumes/extraVolumeMounts, see docs/helm.md)" }}
{{- end }}
{{- if contains "external-dns/external-dns" (toString $v.image.repository) }}
{{- fail (printf "image.repository: %s is external-dns's image; set an extdns image (README \"Container image\": make image)" $v.image.repository) }}
{{- end }}
{{- if not (has (toString $v.registry) (list "txt" "noop")) }}
{{- fail (printf "registry: %q is not supported; extdns keeps ownership in TXT records (registry: txt) or not at all (registry: noop)" (toString $v.registry)) }}
{{- end }}

{{- /* Every external-dns flag the values carry, from extraArgs (list or map) and from
       EXTERNAL_DNS_<FLAG> environment variables, as {name, value, hasValue}. */}}
{{- $flags := list }}
{{- $ea := $v.extraArgs }}
{{- if kindIs "slice" $ea }}
{{- range $a := $ea }}
{{- $s := toString $a }}
{{- if not (hasPrefix "--" $s) }}
{{- fail (printf "extraArgs: %q is not --flag or --flag=value (give a flag and its value as one item)" $s) }}
{{- end }}
{{- $body := trimPrefix "--" $s }}
{{- $n := first (splitList "=" $body) }}
{{- if contains "=" $body }}
{{- $flags = append $flags (dict "name" $n "value" (trimPrefix (printf "%s=" $n) $body) "hasValue" true) }}
{{- else }}
{{- $flags = append $flags (dict "name" $n "value" "" "hasValue" false) }}
{{- end }}
{{- end }}
{{- else if kindIs "map" $ea }}
{{- range $k, $val := $ea }}
{{- $n := trimPrefix "--" $k }}
{{- if kindIs "slice" $val }}
{{- range $val }}{{ $flags = append $flags (dict "name" $n "value" (toString .) "hasValue" true) }}{{ end }}
{{- else if kindIs "invalid" $val }}
{{- $flags = append $flags (dict "name" $n "value" "" "hasValue" false) }}
{{- else }}
{{- $flags = append $flags (dict "name" $n "value" (toString $val) "hasValue" true) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Environment: EXTERNAL_DNS_<FLAG> is a flag; CF_API_TOKEN and AWS_REGION feed the
       provider; the rest is passed on. */}}
{{- $env := list }}
{{- $secretRefs := dict }}
{{- $region := "" }}
{{- $googleKeyFile := "" }}
{{- range $e := $v.env }}
{{- if hasPrefix "EXTERNAL_DNS_" $e.name }}
{{- $n := $e.name | trimPrefix "EXTERNAL_DNS_" | lower | replace "_" "-" }}
{{- if hasKey $e "value" }}
{{- $flags = append $flags (dict "name" $n "value" (toString $e.value) "hasValue" true) }}
{{- else if and (has $n (list "rfc2136-tsig-secret" "pdns-api-key")) (dig "valueFrom" "secretKeyRef" "name" "" $e) }}
{{- $_ := set $secretRefs $n (dict "name" $e.valueFrom.secretKeyRef.name "key" $e.valueFrom.secretKeyRef.key) }}
{{- else }}
{{- fail (printf "env: %s: extdns reads external-dns flags from a value, and only the TSIG secret and PowerDNS API key from valueFrom.secretKeyRef" $e.name) }}
{{- end }}
{{- else if eq $e.name "CF_API_TOKEN" }}
{{- if dig "valueFrom" "secretKeyRef" "name" "" $e }}
{{- $_ := set $secretRefs "cloudflare-api-token" (dict "name" $e.valueFrom.secretKeyRef.name "key" $e.valueFrom.secretKeyRef.key) }}
{{- else if hasKey $e "value" }}
{{- $_ := set $secretRefs "cloudflare-api-token" (dict "value" (toString $e.value)) }}
{{- else }}
{{- fail "env: CF_API_TOKEN: give a value or valueFrom.secretKeyRef" }}
{{- end }}
{{- else if eq $e.name "GOOGLE_APPLICATION_CREDENTIALS" }}
{{- if not (hasKey $e "value") }}{{ fail "env: GOOGLE_APPLICATION_CREDENTIALS: give the key file's path as a value, the file mounted from a Secret with extraVolumes/extraVolumeMounts" }}{{ end }}
{{- $googleKeyFile = toString $e.value }}
{{- else if has $e.name (list "CF_API_KEY" "CF_API_EMAIL" "CF_API_TOKEN_FILE") }}
{{- fail (printf "env: %s: extdns signs in to Cloudflare with an API token only; set CF_API_TOKEN (valueFrom.secretKeyRef) to a token with Zone:Read and DNS:Edit (README \"Cloudflare backend\")" $e.name) }}
{{- else }}
{{- if and (has $e.name (list "AWS_REGION" "AWS_DEFAULT_REGION")) (hasKey $e "value") (not $region) }}
{{- $region = toString $e.value }}
{{- end }}
{{- $env = append $env $e }}
{{- end }}
{{- end }}

{{- /* extdns run flags external-dns users may pass through extraArgs as they are. */}}
{{- $switches := list "combine-fqdn-annotation" "ignore-hostname-annotation" "ignore-ingress-tls-spec" "ignore-ingress-rules-spec" "publish-internal-services" "publish-host-ip" "always-publish-not-ready-addresses" "expose-internal-ipv6" "namespaced-ambient-credentials" "namespaced-custom-endpoint" "namespaced-embedded" }}
{{- $valuedBools := list "exclude-unschedulable" "ignore-non-host-network-pods" }}
{{- $valued := list "fqdn-template" "default-ttl" "ingress-class" "service-type-filter" "gateway-name" "gateway-namespace" "gateway-label-filter" "coalesce-window" "backend-timeout" "status-concurrency" "leader-election-lease" "leader-election-lease-duration" "leader-election-renew-deadline" "leader-election-retry-period" "max-records-per-namespace" "max-record-bytes-per-namespace" "namespace" "crd-source-apiversion" "crd-source-kind" }}
{{- $providerBools := list "aws-evaluate-target-health" "aws-prefer-cname" "cloudflare-proxied" "rfc2136-tsig-axfr" "rfc2136-insecure" "events" "txt-encrypt-enabled" }}
{{- $owned := dict "metrics-addr" "service.port" "operator-namespace" "the release namespace" "leader-elect" "replicaCount (extdns always elects a leader)" "identity" "the pod name" "controllers" "extdns.extraArgs" "log-level" "logLevel" "provider" "provider.name" }}

{{- /* Settings gathered from values, then from flags (flags win, lists add up). */}}
{{- $sources := list }}
{{- range $v.sources }}{{ $sources = append $sources (toString .) }}{{ end }}
{{- $include := list }}
{{- range $v.domainFilters }}{{ $include = append $include (toString .) }}{{ end }}
{{- $exclude := list }}
{{- range $v.excludeDomains }}{{ $exclude = append $exclude (toString .) }}{{ end }}
{{- $types := list }}
{{- range $v.managedRecordTypes }}{{ $types = append $types (toString .) }}{{ end }}
{{- $s := dict "policy" (toString $v.policy) "registry" (toString $v.registry) "ownerId" (toString $v.txtOwnerId) "prefix" (toString $v.txtPrefix) "suffix" (toString $v.txtSuffix) "wildcard" "" "interval" (toString $v.interval) "labelFilter" (toString $v.labelFilter) "annotationFilter" (toString $v.annotationFilter) "logFormat" (toString $v.logFormat) }}
{{- $pass := list }}
{{- $p := dict }}
{{- $zoneTags := dict }}
{{- $zoneNames := list }}
{{- $zoneIds := list }}
{{- $rfcHosts := list }}

{{- range $f := $flags }}
{{- $name := $f.name }}
{{- $value := $f.value }}
{{- $hasValue := $f.hasValue }}
{{- /* --no-<flag> is <flag>=false for external-dns's boolean flags. */}}
{{- $base := trimPrefix "no-" $name }}
{{- if and (hasPrefix "no-" $name) (or (has $base $switches) (has $base $valuedBools) (has $base $providerBools)) (not $hasValue) }}
{{- $name = $base }}{{ $value = "false" }}{{ $hasValue = true }}
{{- end }}
{{- $on := or (not $hasValue) (eq (lower $value) "true") }}
{{- if and $hasValue (has $name (concat $switches $valuedBools $providerBools)) (not (has (lower $value) (list "true" "false"))) }}
{{- fail (printf "extraArgs: --%s=%s: a boolean flag takes true or false" $name $value) }}
{{- end }}
{{- if hasKey $owned $name }}
{{- fail (printf "extraArgs: --%s is set by the chart; use %s" $name (get $owned $name)) }}
{{- else if has $name $switches }}
{{- if $on }}{{ $pass = append $pass (printf "--%s" $name) }}{{ end }}
{{- else if has $name $valuedBools }}
{{- $pass = append $pass (printf "--%s=%t" $name $on) }}
{{- else if has $name $valued }}
{{- if not $hasValue }}{{ fail (printf "extraArgs: --%s needs a value (--%s=...)" $name $name) }}{{ end }}
{{- $pass = append $pass (printf "--%s=%s" $name $value) }}
{{- else if eq $name "source" }}{{ $sources = append $sources $value }}
{{- else if eq $name "domain-filter" }}{{ $include = append $include $value }}
{{- else if eq $name "exclude-domains" }}{{ $exclude = append $exclude $value }}
{{- else if eq $name "managed-record-types" }}{{ $types = append $types $value }}
{{- else if eq $name "policy" }}{{ $_ := set $s "policy" $value }}
{{- else if eq $name "registry" }}{{ $_ := set $s "registry" $value }}
{{- else if eq $name "txt-owner-id" }}{{ $_ := set $s "ownerId" $value }}
{{- else if eq $name "txt-prefix" }}{{ $_ := set $s "prefix" $value }}
{{- else if eq $name "txt-suffix" }}{{ $_ := set $s "suffix" $value }}
{{- else if eq $name "txt-wildcard-replacement" }}{{ $_ := set $s "wildcard" $value }}
{{- else if eq $name "interval" }}{{ $_ := set $s "interval" $value }}
{{- else if eq $name "label-filter" }}{{ $_ := set $s "labelFilter" $value }}
{{- else if eq $name "annotation-filter" }}{{ $_ := set $s "annotationFilter" $value }}
{{- else if eq $name "log-format" }}{{ $_ := set $s "logFormat" $value }}
{{- else if eq $name "events" }}
{{- /* extdns always reacts to events. */}}
{{- else if has $name (list "txt-encrypt-enabled" "txt-encrypt-aes-key") }}
{{- fail (printf "extraArgs: --%s: put the AES key in a Secret and set extdns.clusterDNSProvider.spec.registry.txt.encryption.secretRef {name, key}" $name) }}
{{- else if eq $name "aws-zone-type" }}{{ $_ := set $p "zoneType" (default "any" $value) }}
{{- else if eq $name "aws-zone-tags" }}
{{- range $tag := splitList "," $value }}{{ $k := first (splitList "=" $tag) }}{{ $_ := set $zoneTags $k (trimPrefix "=" (trimPrefix $k $tag)) }}{{ end }}
{{- else if eq $name "aws-assume-role" }}{{ $_ := set $p "assumeRoleArn" $value }}
{{- else if eq $name "aws-batch-change-size" }}{{ $_ := set $p "batchChangeSize" (atoi $value) }}
{{- else if eq $name "aws-evaluate-target-health" }}{{ $_ := set $p "evaluateTargetHealth" $on }}
{{- else if eq $name "aws-prefer-cname" }}{{ $_ := set $p "preferCNAME" $on }}
{{- else if eq $name "aws-zones-cache-duration" }}{{ $_ := set $p "zonesCacheTTL" $value }}
{{- else if eq $name "rfc2136-host" }}{{ $rfcHosts = append $rfcHosts $value }}
{{- else if eq $name "rfc2136-port" }}{{ $_ := set $p "port" (atoi $value) }}
{{- else if eq $name "rfc2136-zone" }}{{ $zoneNames = concat $zoneNames (splitList "," $value) }}
{{- else if eq $name "rfc2136-tsig-keyname" }}{{ $_ := set $p "keyName" $value }}
{{- else if eq $name "rfc2136-tsig-secret" }}{{ $_ := set $secretRefs "rfc2136-tsig-secret" (dict "value" $value) }}
{{- else if eq $name "rfc2136-tsig-secret-alg" }}{{ $_ := set $p "algorithm" (trimSuffix "." $value) }}
{{- else if eq $name "rfc2136-tsig-axfr" }}
{{- if not $on }}{{ fail "extraArgs: --rfc2136-tsig-axfr=false: extdns signs zone transfers with the TSIG key; allow them with the key on the server (allow-transfer { key ...; })" }}{{ end }}
{{- else if eq $name "rfc2136-insecure" }}{{ $_ := set $p "insecure" $on }}
{{- else if eq $name "rfc2136-min-ttl" }}{{ $_ := set $p "minTTL" (atoi (include "extdns.seconds" (dict "d" $value "what" "--rfc2136-min-ttl"))) }}
{{- else if eq $name "rfc2136-batch-change-size" }}{{ $_ := set $p "batchSize" (atoi $value) }}
{{- else if eq $name "cloudflare-proxied" }}{{ $_ := set $p "proxied" $on }}
{{- else if eq $name "cloudflare-dns-records-per-page" }}{{ $_ := set $p "perPage" (atoi $value) }}
{{- else if eq $name "zone-id-filter" }}{{ $zoneIds = append $zoneIds $value }}
{{- else if eq $name "google-project" }}{{ $_ := set $p "project" $value }}
{{- else if eq $name "google-zone-visibility" }}
{{- if not (has $value (list "" "public" "private")) }}{{ fail (printf "extraArgs: --google-zone-visibility=%s: public or private (without the flag: both)" $value) }}{{ end }}
{{- with $value }}{{ $_ := set $p "zoneVisibility" . }}{{ end }}
{{- else if eq $name "google-batch-change-size" }}{{ $_ := set $p "googleBatchChangeSize" (atoi $value) }}
{{- else if eq $name "google-batch-change-interval" }}{{ $_ := set $p "batchChangeInterval" $value }}
{{- else if eq $name "azure-config-file" }}{{ $_ := set $p "azureConfigFile" $value }}
{{- else if eq $name "azure-subscription-id" }}{{ $_ := set $p "subscriptionId" $value }}
{{- else if eq $name "azure-resource-group" }}{{ $_ := set $p "resourceGroup" $value }}
{{- else if eq $name "azure-user-assigned-identity-client-id" }}{{ $_ := set $p "userAssignedIdentityClientId" $value }}
{{- else if eq $name "azure-maxretries-count" }}{{ $_ := set $p "maxAttempts" (atoi $value) }}
{{- else if eq $name "azure-zones-cache-duration" }}
{{- fail "extraArgs: --azure-zones-cache-duration: extdns lists Azure zones with their records; how often is interval (the ClusterDNSProvider's resyncInterval)" }}
{{- else if eq $name "pdns-server" }}{{ $_ := set $p "url" $value }}
{{- else if eq $name "pdns-server-id" }}{{ $_ := set $p "serverId" $value }}
{{- else if eq $name "pdns-api-key" }}{{ $_ := set $secretRefs "pdns-api-key" (dict "value" $value) }}
{{- else if eq $name "webhook-provider-url" }}{{ $_ := set $p "url" $value }}
{{- else if eq $name "inmemory-zone" }}{{ $zoneNames = append $zoneNames $value }}
{{- else }}
{{- fail (printf "extraArgs: --%s: extdns has no such setting. Source flags it has: --%s; provider settings go into the ClusterDNSProvider: extdns.clusterDNSProvider.spec (README \"Helm chart\")" $name (join ", --" (concat $switches $valuedBools $valued))) }}
{{- end }}
{{- end }}

{{- /* Sources. */}}
{{- $known := list "service" "ingress" "node" "pod" "gateway-httproute" "gateway-grpcroute" "gateway-tlsroute" "gateway-tcproute" "gateway-udproute" "crd" }}
{{- if not $sources }}{{ fail "sources: name at least one source" }}{{ end }}
{{- range $sources }}
{{- if not (has . $known) }}
{{- fail (printf "sources: %s is not an extdns source; extdns has %s" . (join ", " $known)) }}
{{- end }}
{{- end }}

{{- /* Arguments: as config/manager/deployment.yaml runs extdns, plus the translated flags. */}}
{{- $args := list "run" "--leader-elect" (printf "--metrics-addr=0.0.0.0:%v" $v.service.port) }}
{{- if not (has $s.logFormat (list "text" "json")) }}{{ fail (printf "logFormat: %q: extdns logs text or json" $s.logFormat) }}{{ end }}
{{- $args = append $args (printf "--log-format=%s" $s.logFormat) }}
{{- range (uniq $sources) }}{{ $args = append $args (printf "--source=%s" .) }}{{ end }}
{{- if $v.namespaced }}{{ $args = append $args (printf "--namespace=%s" $.Release.Namespace) }}{{ end }}
{{- with $v.gatewayNamespace }}{{ $args = append $args (printf "--gateway-namespace=%s" .) }}{{ end }}
{{- with $s.labelFilter }}{{ $args = append $args (printf "--label-filter=%s" .) }}{{ end }}
{{- with $s.annotationFilter }}{{ $args = append $args (printf "--annotation-filter=%s" .) }}{{ end }}
{{- $args = concat $args $pass }}
{{- range $v.extdns.extraArgs }}{{ $args = append $args (toString .) }}{{ end }}

{{- /* The ClusterDNSProvider. */}}
{{- $spec := dict }}
{{- if not (has $s.policy (list "sync" "upsert-only" "create-only")) }}
{{- fail (printf "policy: %q: extdns has sync, upsert-only and create-only" $s.policy) }}
{{- end }}
{{- $_ := set $spec "policy" $s.policy }}
{{- if or $include $exclude }}
{{- $domains := dict }}
{{- with $include }}{{ $_ := set $domains "include" (uniq .) }}{{ end }}
{{- with $exclude }}{{ $_ := set $domains "exclude" (uniq .) }}{{ end }}
{{- $_ := set $spec "domains" $domains }}
{{- end }}
{{- if eq $s.registry "noop" }}
{{- if or $s.ownerId $s.prefix $s.suffix }}{{ fail "registry: noop writes no ownership records; remove txtOwnerId, txtPrefix and txtSuffix" }}{{ end }}
{{- $_ := set $spec "registry" (dict "none" (dict)) }}
{{- else }}
{{- if and $s.prefix $s.suffix }}{{ fail "txtPrefix and txtSuffix: external-dns takes one of them; set only one" }}{{ end }}
{{- $txt := dict }}
{{- with $s.ownerId }}{{ $_ := set $txt "ownerId" . }}{{ end }}
{{- with $s.prefix }}{{ $_ := set $txt "prefix" . }}{{ end }}
{{- with $s.suffix }}{{ $_ := set $txt "suffix" . }}{{ end }}
{{- with $s.wildcard }}{{ $_ := set $txt "wildcardReplacement" . }}{{ end }}
{{- $_ := set $spec "registry" (dict "txt" $txt) }}
{{- end }}
{{- with $types }}{{ $_ := set $spec "managedRecordTypes" (uniq .) }}{{ end }}
{{- if not (regexMatch "^([1-9][0-9]*h([0-9]+m)?([0-9]+s)?|[1-9][0-9]*m([0-9]+s)?|([6-9][0-9]|[1-9][0-9]{2,})s?)$" $s.interval) }}
{{- fail (printf "interval: %q: extdns reacts to changes at once; interval is how often it lists the zones again to repair drift (the ClusterDNSProvider's resyncInterval), at least 1m and at most 24h, e.g. 1m or 1h" $s.interval) }}
{{- end }}
{{- if gt (atoi (include "extdns.seconds" (dict "d" $s.interval "what" "interval"))) 86400 }}
{{- fail (printf "interval: %q: at most 24h (the ClusterDNSProvider's resyncInterval)" $s.interval) }}
{{- end }}
{{- $_ := set $spec "resyncInterval" $s.interval }}

{{- $secrets := dict }}
{{- $pname := "" }}
{{- if kindIs "string" $v.provider }}{{ $pname = $v.provider }}{{ else }}{{ $pname = toString $v.provider.name }}{{ end }}
{{- $only := dict "aws" (list "zoneType" "assumeRoleArn" "batchChangeSize" "evaluateTargetHealth" "preferCNAME" "zonesCacheTTL") "rfc2136" (list "port" "keyName" "algorithm" "insecure" "minTTL" "batchSize") "cloudflare" (list "proxied" "perPage") "pdns" (list "url" "serverId") "webhook" (list "url") "inmemory" (list) "google" (list "project" "zoneVisibility" "googleBatchChangeSize" "batchChangeInterval") "azure" (list "azureConfigFile" "subscriptionId" "resourceGroup" "userAssignedIdentityClientId" "maxAttempts") "azure-private-dns" (list "azureConfigFile" "subscriptionId" "resourceGroup" "userAssignedIdentityClientId" "maxAttempts") }}
{{- if not (hasKey $only $pname) }}
{{- fail (printf "provider.name: %q: extdns has aws, google, azure, azure-private-dns, rfc2136, cloudflare, pdns, inmemory and webhook; every other external-dns provider has a webhook (README \"Webhook backend\"): set provider.name webhook and provider.webhook.image" $pname) }}
{{- end }}
{{- range $k, $_ := $p }}
{{- if not (has $k (get $only $pname)) }}
{{- fail (printf "extraArgs: the flag setting %s belongs to another provider than provider.name %s" $k $pname) }}
{{- end }}
{{- end }}
{{- if and $zoneTags (ne $pname "aws") }}{{ fail (printf "extraArgs: --aws-zone-tags is for provider aws, not %s" $pname) }}{{ end }}
{{- if and $zoneIds (not (has $pname (list "cloudflare" "google"))) }}{{ fail (printf "extraArgs: --zone-id-filter: extdns selects zones by id for cloudflare and google only; for %s use domainFilters or extdns.clusterDNSProvider.spec.zones.include" $pname) }}{{ end }}
{{- if and $googleKeyFile (ne $pname "google") }}{{ fail (printf "env: GOOGLE_APPLICATION_CREDENTIALS is for provider google, not %s" $pname) }}{{ end }}
{{- if and $rfcHosts (ne $pname "rfc2136") }}{{ fail (printf "extraArgs: --rfc2136-host is for provider rfc2136, not %s" $pname) }}{{ end }}
{{- if and $zoneNames (not (has $pname (list "rfc2136" "inmemory"))) }}{{ fail (printf "extraArgs: zone flags are for providers rfc2136 and inmemory, not %s" $pname) }}{{ end }}

{{- if and (ne $pname "webhook") (kindIs "map" $v.provider) (dig "webhook" "image" "repository" "" $v.provider) }}
{{- fail (printf "provider.webhook.image.repository is set but provider.name is %s: set provider.name webhook to run the sidecar" $pname) }}
{{- end }}
{{- if eq $pname "aws" }}
{{- $r := merge (dict "region" (default "us-east-1" $region)) $p }}
{{- with $zoneTags }}{{ $_ := set $r "zoneTags" . }}{{ end }}
{{- $_ := set $spec "route53" $r }}
{{- else if eq $pname "rfc2136" }}
{{- if ne (len $rfcHosts) 1 }}{{ fail "extraArgs: provider rfc2136 needs one --rfc2136-host (extdns talks to one server per provider; make one ClusterDNSProvider per server with extdns.clusterDNSProvider)" }}{{ end }}
{{- if not $zoneNames }}{{ fail "extraArgs: provider rfc2136 needs --rfc2136-zone" }}{{ end }}
{{- $r := dict "host" (first $rfcHosts) "zones" (uniq $zoneNames) }}
{{- /* external-dns's RFC2136 provider writes a record without a TTL with TTL 0, raised to --rfc2136-min-ttl: the same through defaultTTL 0 (extdns's default is 300). */}}
{{- $_ := set $spec "defaultTTL" 0 }}
{{- range $k := list "port" "minTTL" "batchSize" }}{{ if hasKey $p $k }}{{ $_ := set $r $k (get $p $k) }}{{ end }}{{ end }}
{{- if dig "insecure" false $p }}
{{- if or (hasKey $p "keyName") (hasKey $secretRefs "rfc2136-tsig-secret") }}{{ fail "extraArgs: --rfc2136-insecure and a TSIG key: pick one" }}{{ end }}
{{- else }}
{{- if not (hasKey $p "keyName") }}{{ fail "extraArgs: provider rfc2136 needs --rfc2136-tsig-keyname and the secret (--rfc2136-tsig-secret, or env EXTERNAL_DNS_RFC2136_TSIG_SECRET from a Secret), or --rfc2136-insecure" }}{{ end }}
{{- $ref := required "provider rfc2136: the TSIG secret: --rfc2136-tsig-secret, or env EXTERNAL_DNS_RFC2136_TSIG_SECRET with valueFrom.secretKeyRef" (get $secretRefs "rfc2136-tsig-secret") }}
{{- if hasKey $ref "value" }}
{{- $_ := set $secrets "rfc2136-tsig-secret" $ref.value }}
{{- $ref = dict "name" (printf "%s-credentials" $fullname) "key" "rfc2136-tsig-secret" }}
{{- end }}
{{- $tsig := dict "keyName" $p.keyName "secretRef" $ref }}
{{- with $p.algorithm }}{{ $_ := set $tsig "algorithm" . }}{{ end }}
{{- $_ := set $r "tsig" $tsig }}
{{- end }}
{{- $_ := set $spec "rfc2136" $r }}
{{- else if eq $pname "cloudflare" }}
{{- $ref := required "provider cloudflare: set env CF_API_TOKEN with valueFrom.secretKeyRef (a token with Zone:Read and DNS:Edit)" (get $secretRefs "cloudflare-api-token") }}
{{- if hasKey $ref "value" }}
{{- $_ := set $secrets "cloudflare-api-token" $ref.value }}
{{- $ref = dict "name" (printf "%s-credentials" $fullname) "key" "cloudflare-api-token" }}
{{- end }}
{{- $r := merge (dict "apiToken" (dict "secretRef" $ref)) $p }}
{{- with $zoneIds }}{{ $_ := set $r "zoneIDs" . }}{{ end }}
{{- $_ := set $spec "cloudflare" $r }}
{{- else if eq $pname "google" }}
{{- $r := dict }}
{{- range $k := list "project" "zoneVisibility" "batchChangeInterval" }}{{ if hasKey $p $k }}{{ $_ := set $r $k (get $p $k) }}{{ end }}{{ end }}
{{- if hasKey $p "googleBatchChangeSize" }}{{ $_ := set $r "batchChangeSize" $p.googleBatchChangeSize }}{{ end }}
{{- with $zoneIds }}{{ $_ := set $r "zones" . }}{{ end }}
{{- /* A service-account key file: the Secret mounted there. Without one, the pod's own
       identity (GKE Workload Identity, the metadata server), as external-dns. */}}
{{- if and $googleKeyFile (not (dig "google" "credentials" "" $v.extdns.clusterDNSProvider.spec)) }}
{{- $ref := include "extdns.secretFile" (dict "v" $v "path" $googleKeyFile) | fromJson }}
{{- if not $ref }}
{{- fail (printf "env: GOOGLE_APPLICATION_CREDENTIALS=%s: extdns reads the service-account key from a Secret, and no extraVolumes secret volume mounted by extraVolumeMounts holds that path; mount it from the Secret, or set extdns.clusterDNSProvider.spec.google.credentials.secretRef {name, key}" $googleKeyFile) }}
{{- end }}
{{- $_ := set $r "credentials" (dict "secretRef" $ref) }}
{{- end }}
{{- $_ := set $spec "google" $r }}
{{- else if has $pname (list "azure" "azure-private-dns") }}
{{- $field := ternary "azure" "azurePrivateDns" (eq $pname "azure") }}
{{- $r := dict }}
{{- range $k := list "subscriptionId" "resourceGroup" "userAssignedIdentityClientId" "maxAttempts" }}{{ if hasKey $p $k }}{{ $_ := set $r $k (get $p $k) }}{{ end }}{{ end }}
{{- /* azure.json (--azure-config-file, default /etc/kubernetes/azure.json): the Secret
       mounted there. Without one, the pod's own identity (Azure Workload Identity, the
       node's managed identity), which needs the subscription. */}}
{{- if not (dig $field "credentials" "" $v.extdns.clusterDNSProvider.spec) }}
{{- $file := default "/etc/kubernetes/azure.json" $p.azureConfigFile }}
{{- $ref := include "extdns.secretFile" (dict "v" $v "path" $file) | fromJson }}
{{- if $ref }}
{{- $_ := set $r "credentials" (dict "azureConfigSecretRef" $ref) }}
{{- else if hasKey $p "azureConfigFile" }}
{{- fail (printf "extraArgs: --azure-config-file=%s: extdns reads azure.json from a Secret, and no extraVolumes secret volume mounted by extraVolumeMounts holds that path; mount it from the Secret, or set extdns.clusterDNSProvider.spec.%s.credentials (azureConfigSecretRef {name, key} or secretRef)" $file $field) }}
{{- else if not (or $r.subscriptionId (dig $field "subscriptionId" "" $v.extdns.clusterDNSProvider.spec)) }}
{{- fail (printf "provider %s: without azure.json (a Secret mounted at /etc/kubernetes/azure.json with extraVolumes/extraVolumeMounts, or --azure-config-file) extdns uses the pod's own Azure identity and needs --azure-subscription-id" $pname) }}
{{- end }}
{{- end }}
{{- $_ := set $spec $field $r }}
{{- else if eq $pname "pdns" }}
{{- $ref := required "provider pdns: the API key: --pdns-api-key, or env EXTERNAL_DNS_PDNS_API_KEY with valueFrom.secretKeyRef" (get $secretRefs "pdns-api-key") }}
{{- if hasKey $ref "value" }}
{{- $_ := set $secrets "pdns-api-key" $ref.value }}
{{- $ref = dict "name" (printf "%s-credentials" $fullname) "key" "pdns-api-key" }}
{{- end }}
{{- $_ := set $spec "powerdns" (merge (dict "url" (required "provider pdns: set --pdns-server" $p.url) "apiKeySecretRef" $ref) $p) }}
{{- else if eq $pname "webhook" }}
{{- $wimg := "" }}
{{- if kindIs "map" $v.provider }}{{ $wimg = dig "webhook" "image" "repository" "" $v.provider }}{{ end }}
{{- if not $wimg }}
{{- fail "provider.webhook.image.repository: provider webhook runs the webhook as a sidecar; name its image" }}
{{- end }}
{{- $_ := set $spec "webhook" $p }}
{{- else if eq $pname "inmemory" }}
{{- $_ := set $spec "inMemory" (dict "zones" (default $include $zoneNames)) }}
{{- end }}
{{- $spec = mergeOverwrite $spec (deepCopy $v.extdns.clusterDNSProvider.spec) }}

{{- /* logLevel becomes RUST_LOG: external-dns's level for extdns, warnings for libraries. */}}
{{- $levels := dict "panic" "error" "fatal" "error" "error" "error" "warning" "warn" "warn" "warn" "info" "info" "debug" "debug" "trace" "trace" }}
{{- if not (hasKey $levels (toString $v.logLevel)) }}{{ fail (printf "logLevel: %q: use error, warn, info, debug or trace" (toString $v.logLevel)) }}{{ end }}
{{- $level := get $levels (toString $v.logLevel) }}

args: {{ toYaml $args | nindent 2 }}
rustLog: {{ printf "warn,extdns=%s" $level | quote }}
env: {{ toYaml $env | nindent 2 }}
spec: {{ toYaml $spec | nindent 2 }}
secrets: {{ toYaml $secrets | nindent 2 }}
provider: {{ $pname | quote }}
{{- end }}

{{- define "extdns.providerName" -}}
{{- if kindIs "string" .Values.provider }}{{ .Values.provider }}{{ else }}{{ .Values.provider.name }}{{ end }}
{{- end }}
