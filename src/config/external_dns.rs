//! external-dns command lines as they are: its boolean flags take kingpin's three forms
//! (`--flag`, `--flag=true|false`, `--no-flag`), and its flags that extdns does not take are
//! refused with a message naming what to use instead, so that `extraArgs` copied from an
//! external-dns install either mean the same here or stop the start with a pointer.

use std::ffi::OsString;

use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, Command};

/// external-dns flags extdns does not take, and what to use instead. Most of them configure
/// the one provider of an external-dns process; here that is a DNSProvider or
/// ClusterDNSProvider object, so they name its spec field.
const REFUSED: &[(&str, &str)] = &[
    (
        "provider",
        "a DNSProvider or ClusterDNSProvider with one backend block in its spec: route53, cloudflare, azure, azurePrivateDns, google, rfc2136, powerdns, webhook, inMemory or embedded",
    ),
    ("domain-filter", "spec.domains.include of the DNSProvider or ClusterDNSProvider"),
    ("exclude-domains", "spec.domains.exclude of the DNSProvider or ClusterDNSProvider"),
    ("regex-domain-filter", "spec.domains.include (domain suffixes; regular expressions are not supported)"),
    ("regex-domain-exclusion", "spec.domains.exclude (domain suffixes; regular expressions are not supported)"),
    ("zone-name-filter", "spec.zones.include of the DNSProvider or ClusterDNSProvider"),
    ("zone-id-filter", "spec.cloudflare.zoneIDs (Cloudflare), spec.google.zones (Google) or spec.zones.include (zone names)"),
    ("policy", "spec.policy of the DNSProvider or ClusterDNSProvider (sync, upsert-only, create-only)"),
    ("registry", "spec.registry of the DNSProvider or ClusterDNSProvider (txt or none)"),
    ("txt-owner-id", "spec.registry.txt.ownerId of the DNSProvider or ClusterDNSProvider"),
    ("txt-prefix", "spec.registry.txt.prefix of the DNSProvider or ClusterDNSProvider"),
    ("txt-suffix", "spec.registry.txt.suffix of the DNSProvider or ClusterDNSProvider"),
    ("txt-wildcard-replacement", "spec.registry.txt.wildcardReplacement of the DNSProvider or ClusterDNSProvider"),
    ("txt-encrypt-enabled", "spec.registry.txt.encryption.secretRef of the DNSProvider or ClusterDNSProvider"),
    ("txt-encrypt-aes-key", "spec.registry.txt.encryption.secretRef (the key kept in a Secret)"),
    ("managed-record-types", "spec.managedRecordTypes of the DNSProvider or ClusterDNSProvider"),
    ("interval", "spec.resyncInterval of the DNSProvider or ClusterDNSProvider (changes are sent as they happen; the interval only bounds drift repair)"),
    ("events", "no flag: extdns always sends changes as they happen"),
    ("min-event-sync-interval", "--coalesce-window"),
    ("once", "`extdns render --plan -f FILES` to see the changes without a cluster"),
    ("dry-run", "`extdns render --plan -f FILES` to see the changes without a cluster"),
    ("metrics-address", "--metrics-addr"),
    ("log-level", "the RUST_LOG environment variable, e.g. RUST_LOG=debug"),
    ("kubeconfig", "the KUBECONFIG environment variable"),
    ("master", "the server of the kubeconfig named by the KUBECONFIG environment variable"),
    ("default-targets", "the external-dns.alpha.kubernetes.io/target annotation on the source objects"),
    ("target-template", "the external-dns.alpha.kubernetes.io/target annotation on the source objects"),
    ("fqdn-target-template", "--fqdn-template with the external-dns.alpha.kubernetes.io/target annotation"),
    (
        "compatibility",
        "the external-dns.alpha.kubernetes.io annotations (mate, molecule and kops-dns-controller annotations are not read)",
    ),
    ("aws-zone-type", "spec.route53.zoneType of the DNSProvider or ClusterDNSProvider"),
    ("aws-zone-tags", "spec.route53.zoneTags of the DNSProvider or ClusterDNSProvider"),
    ("aws-assume-role", "spec.route53.assumeRoleArn of the DNSProvider or ClusterDNSProvider"),
    ("aws-batch-change-size", "spec.route53.batchChangeSize of the DNSProvider or ClusterDNSProvider"),
    ("aws-evaluate-target-health", "spec.route53.evaluateTargetHealth of the DNSProvider or ClusterDNSProvider"),
    ("aws-prefer-cname", "spec.route53.preferCNAME of the DNSProvider or ClusterDNSProvider"),
    ("aws-zones-cache-duration", "spec.route53.zonesCacheTTL of the DNSProvider or ClusterDNSProvider"),
    ("aws-profile", "spec.route53.credentials (a Secret), or the operator's own AWS identity"),
    ("cloudflare-proxied", "spec.cloudflare.proxied of the DNSProvider or ClusterDNSProvider"),
    ("cloudflare-dns-records-per-page", "spec.cloudflare.perPage of the DNSProvider or ClusterDNSProvider"),
    ("google-project", "spec.google.project of the DNSProvider or ClusterDNSProvider"),
    ("google-zone-visibility", "spec.google.zoneVisibility of the DNSProvider or ClusterDNSProvider"),
    ("google-batch-change-size", "spec.google.batchChangeSize of the DNSProvider or ClusterDNSProvider"),
    ("google-batch-change-interval", "spec.google.batchChangeInterval of the DNSProvider or ClusterDNSProvider"),
    ("rfc2136-host", "spec.rfc2136.host of the DNSProvider or ClusterDNSProvider"),
    ("rfc2136-port", "spec.rfc2136.port of the DNSProvider or ClusterDNSProvider"),
    ("rfc2136-zone", "spec.rfc2136.zones of the DNSProvider or ClusterDNSProvider"),
    ("rfc2136-tsig-keyname", "spec.rfc2136.tsig.keyName of the DNSProvider or ClusterDNSProvider"),
    ("rfc2136-tsig-secret", "spec.rfc2136.tsig.secretRef (the secret kept in a Secret)"),
    ("rfc2136-tsig-secret-alg", "spec.rfc2136.tsig.algorithm of the DNSProvider or ClusterDNSProvider"),
    ("rfc2136-min-ttl", "spec.rfc2136.minTTL of the DNSProvider or ClusterDNSProvider"),
    ("rfc2136-batch-change-size", "spec.rfc2136.batchSize of the DNSProvider or ClusterDNSProvider"),
    ("pdns-server", "spec.powerdns.url of the DNSProvider or ClusterDNSProvider"),
    ("pdns-server-id", "spec.powerdns.serverId of the DNSProvider or ClusterDNSProvider"),
    ("pdns-api-key", "spec.powerdns.apiKeySecretRef (the key kept in a Secret)"),
    ("webhook-provider-url", "spec.webhook.url of the DNSProvider or ClusterDNSProvider"),
    (
        "azure-config-file",
        "spec.azure.credentials.azureConfigSecretRef (or spec.azurePrivateDns): the azure.json kept in a Secret",
    ),
    ("azure-resource-group", "spec.azure.resourceGroup (or spec.azurePrivateDns.resourceGroup)"),
    ("azure-subscription-id", "spec.azure.subscriptionId (or spec.azurePrivateDns.subscriptionId)"),
    (
        "azure-user-assigned-identity-client-id",
        "spec.azure.userAssignedIdentityClientId (or spec.azurePrivateDns.userAssignedIdentityClientId)",
    ),
    (
        "azure-zones-cache-duration",
        "spec.resyncInterval of the DNSProvider or ClusterDNSProvider (Azure zones are listed with its records)",
    ),
    ("azure-maxretries-count", "spec.azure.maxAttempts (or spec.azurePrivateDns.maxAttempts)"),
];

/// What to use instead of an external-dns flag extdns does not take, for a long flag name
/// without its dashes (`no-` negations included).
pub fn instead_of(flag: &str) -> Option<&'static str> {
    let lookup = |name: &str| REFUSED.iter().find(|(f, _)| *f == name).map(|(_, instead)| *instead);
    lookup(flag).or_else(|| flag.strip_prefix("no-").and_then(lookup))
}

/// True for flags that take `true`/`false` (the other spellings a parser accepts are hidden).
pub fn is_boolean(a: &Arg) -> bool {
    if matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return true;
    }
    let values: Vec<String> =
        a.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| v.get_name().to_string()).collect();
    !values.is_empty() && values.iter().all(|v| v == "true" || v == "false")
}

/// Every boolean flag of `cmd` in kingpin's forms: `--flag` means true, `--flag=true|false`
/// sets it (yes/no, on/off and 1/0 too, also from its environment variable), and
/// `--no-flag` (rewritten by [`rewrite_negations`]) means false.
pub fn kingpin_booleans(cmd: Command) -> Command {
    cmd.mut_args(|a| {
        if !is_boolean(&a) {
            return a;
        }
        let implicit_false = matches!(a.get_action(), ArgAction::SetTrue);
        let a = a
            .action(ArgAction::Set)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .value_parser(BoolishValueParser::new());
        if implicit_false {
            a.default_value("false")
        } else {
            a
        }
    })
}

/// `--no-flag` → `--flag=false` for the boolean flags of the subcommand named first in
/// `args`; everything after `--` is left alone.
pub fn rewrite_negations(cmd: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let Some(sub) = args.iter().skip(1).find_map(|a| a.to_str().and_then(|s| cmd.find_subcommand(s))) else {
        return args;
    };
    let booleans: Vec<&str> = sub.get_arguments().filter(|a| is_boolean(a)).filter_map(Arg::get_long).collect();
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for arg in args {
        let negated = arg
            .to_str()
            .filter(|_| !rest)
            .and_then(|s| s.strip_prefix("--no-"))
            .filter(|name| booleans.contains(name))
            .map(|name| OsString::from(format!("--{name}=false")));
        rest |= arg == "--";
        out.push(negated.unwrap_or(arg));
    }
    out
}

/// The first external-dns flag in `args` that extdns refuses, as a usage error naming what to
/// use instead.
pub fn refuse_external_dns_flags(args: &[OsString]) -> Result<(), clap::Error> {
    for arg in args.iter().skip(1) {
        let Some(s) = arg.to_str() else { continue };
        if s == "--" {
            break;
        }
        let Some(name) = s.strip_prefix("--").map(|n| n.split('=').next().unwrap_or(n)) else { continue };
        if let Some(instead) = instead_of(name) {
            return Err(clap::Error::raw(
                ErrorKind::UnknownArgument,
                format!("--{name} is an external-dns flag that extdns does not take; instead: {instead}\n"),
            ));
        }
    }
    Ok(())
}
