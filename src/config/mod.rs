//! All configuration, parsed once.

pub mod external_dns;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::source::SourceArgs;

#[derive(Parser, Debug)]
#[command(name = "extdns", version, about = "External-DNS for Kubernetes as a CRD-driven operator")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line as parsed at start-up: booleans in external-dns's (kingpin's) forms,
    /// external-dns flags extdns does not take refused with what to use instead.
    pub fn command_external_dns_compatible() -> clap::Command {
        Cli::command()
            .mut_subcommand("run", external_dns::kingpin_booleans)
            .mut_subcommand("render", external_dns::kingpin_booleans)
    }

    /// Parses `args` (program name first) as [`Cli::command_external_dns_compatible`] does.
    pub fn try_parse_external_dns_compatible<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        external_dns::refuse_external_dns_flags(&args)?;
        let mut cmd = Cli::command_external_dns_compatible();
        let args = external_dns::rewrite_negations(&cmd, args);
        let matches = cmd.try_get_matches_from_mut(args)?;
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers against the cluster in the current kubeconfig (or in-cluster).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crdgen,
    /// Print the DNSEndpoints the source controller would write for Kubernetes YAML files.
    Render(RenderArgs),
    /// Print the version.
    Version,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Controller {
    Source,
    Provider,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Controllers to run in this process.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Controller::Source, Controller::Provider], env = "EXTDNS_CONTROLLERS")]
    pub controllers: Vec<Controller>,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, default_value = "0.0.0.0:8080", env = "EXTDNS_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Namespace the operator runs in; ClusterDNSProviders read their Secrets there.
    #[arg(long, default_value = "extdns", env = "POD_NAMESPACE")]
    pub operator_namespace: String,
    /// While changes to a provider arrive faster than its passes finish, it sends at most
    /// one batch per window, e.g. "100ms"; a change that finds it idle goes out at once.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, env = "EXTDNS_COALESCE_WINDOW")]
    pub coalesce_window: std::time::Duration,
    /// Longest a single call to a DNS backend (zone list, record listing, change batch) may
    /// take before it counts as unreachable and is retried, e.g. "2m". Backends have their own
    /// per-request timeouts; this bounds whole calls (an AXFR of a huge zone, rate-limit waits).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration, env = "EXTDNS_BACKEND_TIMEOUT")]
    pub backend_timeout: std::time::Duration,
    /// Concurrent status writes of the provider controller.
    #[arg(long, default_value_t = 16, env = "EXTDNS_STATUS_CONCURRENCY")]
    pub status_concurrency: usize,
    /// Elect one writer among replicas with a Lease: every replica serves embedded DNS, only
    /// the leader writes to DNS backends and the Kubernetes API. On by default; a single
    /// local process may turn it off with `--leader-elect=false`.
    #[arg(
        long,
        env = "EXTDNS_LEADER_ELECT",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub leader_elect: bool,
    /// Name of the Lease, in --operator-namespace.
    #[arg(long, default_value = "extdns-leader", env = "EXTDNS_LEADER_ELECTION_LEASE")]
    pub leader_election_lease: String,
    /// How long followers wait after the Lease last changed before they take it, e.g. "15s".
    #[arg(long, alias = "leader-election-duration", default_value = "15s", value_parser = humantime::parse_duration, env = "EXTDNS_LEADER_ELECTION_LEASE_DURATION")]
    pub leader_election_lease_duration: std::time::Duration,
    /// How long the leader goes on writing without a successful renew; shorter than the
    /// lease duration, e.g. "10s".
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "EXTDNS_LEADER_ELECTION_RENEW_DEADLINE")]
    pub leader_election_renew_deadline: std::time::Duration,
    /// How often the leader renews and followers look at the Lease, e.g. "2s".
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, env = "EXTDNS_LEADER_ELECTION_RETRY_PERIOD")]
    pub leader_election_retry_period: std::time::Duration,
    /// This replica's identity in the Lease. Default: the host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "EXTDNS_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Records (entries of `spec.endpoints`) the DNSEndpoints of one namespace may have
    /// served; past it, the youngest objects are Stalled with reason RecordLimit and none of
    /// their records is held or published. 0: no limit.
    #[arg(long, default_value_t = 10_000, env = "EXTDNS_MAX_RECORDS_PER_NAMESPACE")]
    pub max_records_per_namespace: usize,
    /// Bytes of record data (names, targets, set identifiers, labels, provider-specific
    /// properties) the DNSEndpoints of one namespace may have served, e.g. "16Mi"; past it,
    /// as --max-records-per-namespace. 0: no limit.
    #[arg(long, default_value = "16Mi", value_parser = crate::controller::provider::budget::parse_bytes, env = "EXTDNS_MAX_RECORD_BYTES_PER_NAMESPACE")]
    pub max_record_bytes_per_namespace: usize,
    #[command(flatten)]
    pub tenancy: TenancyFlags,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// What namespaced DNSProviders may use. Tenants can create DNSProviders in their namespaces;
/// without these flags they can only reach DNS backends with credentials of their own, the
/// way cert-manager treats namespaced Issuers. ClusterDNSProviders, created by the platform
/// team, may always use all of it.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TenancyFlags {
    /// Let namespaced DNSProviders use the operator's own AWS identity: a `route53` block
    /// without `credentials` (environment, IRSA web identity, profile, instance metadata), and
    /// `assumeRoleArn` without `credentials`; its own Google identity (a `google` block without
    /// `credentials`: GKE Workload Identity, the metadata server); and a `webhook` on localhost
    /// (the operator's sidecar, acting with the platform's DNS credentials).
    #[arg(long, env = "EXTDNS_NAMESPACED_AMBIENT_CREDENTIALS")]
    pub namespaced_ambient_credentials: bool,
    /// Let namespaced DNSProviders set `route53.endpoint`, `cloudflare.baseURL`,
    /// `google.endpoint` or `google.tokenURI`, use
    /// `powerdns` (whose `url` is always the tenant's) or a `webhook` off localhost, which makes
    /// the operator send requests to any URL a tenant names.
    #[arg(long, env = "EXTDNS_NAMESPACED_CUSTOM_ENDPOINT")]
    pub namespaced_custom_endpoint: bool,
    /// Let namespaced DNSProviders use the `embedded` backend, which opens a listening
    /// socket in the operator's pod (still never on an address a ClusterDNSProvider uses).
    #[arg(long, env = "EXTDNS_NAMESPACED_EMBEDDED")]
    pub namespaced_embedded: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// Files or directories of Kubernetes YAML; "-" reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Instead of the DNSEndpoints, print the DNS changes they (and DNSEndpoints in the files)
    /// would make in an empty zone, TXT ownership records included.
    #[arg(long)]
    pub plan: bool,
    /// TXT owner id used by --plan.
    #[arg(long, default_value = "default")]
    pub owner_id: String,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_run_flags() {
        let cli =
            Cli::try_parse_from(["extdns", "run", "--controllers", "provider", "--coalesce-window", "250ms"]).unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!(run.controllers, vec![Controller::Provider]);
        assert_eq!(run.coalesce_window, std::time::Duration::from_millis(250));
        assert_eq!(run.backend_timeout, std::time::Duration::from_secs(120));
        assert_eq!(run.metrics_addr.port(), 8080);
        assert_eq!(run.tenancy, TenancyFlags::default(), "tenants get nothing ambient by default");
        assert_eq!((run.max_records_per_namespace, run.max_record_bytes_per_namespace), (10_000, 16 << 20));
        let cli = Cli::try_parse_from([
            "extdns",
            "run",
            "--max-records-per-namespace",
            "0",
            "--max-record-bytes-per-namespace",
            "1Gi",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!((run.max_records_per_namespace, run.max_record_bytes_per_namespace), (0, 1 << 30));
    }

    #[test]
    fn parses_tenancy_flags() {
        let cli = Cli::try_parse_from([
            "extdns",
            "run",
            "--namespaced-ambient-credentials",
            "--namespaced-custom-endpoint",
            "--namespaced-embedded",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert_eq!(
            run.tenancy,
            TenancyFlags {
                namespaced_ambient_credentials: true,
                namespaced_custom_endpoint: true,
                namespaced_embedded: true
            }
        );
        let cli = Cli::try_parse_from(["extdns", "run", "--namespaced-embedded"]).unwrap();
        let Command::Run(run) = cli.command else { panic!("expected run") };
        assert!(run.tenancy.namespaced_embedded && !run.tenancy.namespaced_ambient_credentials);
    }

    #[test]
    fn parses_leader_election_flags() {
        let run = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["extdns", "run"][..], args].concat()).expect("parses");
            let Command::Run(run) = cli.command else { panic!("expected run") };
            run
        };
        let d = run(&[]);
        assert!(d.leader_elect, "on by default");
        assert_eq!(
            (d.leader_election_lease_duration, d.leader_election_renew_deadline, d.leader_election_retry_period),
            (std::time::Duration::from_secs(15), std::time::Duration::from_secs(10), std::time::Duration::from_secs(2))
        );
        assert!(run(&["--leader-elect"]).leader_elect);
        assert!(!run(&["--leader-elect=false"]).leader_elect);
        assert!(run(&["--leader-elect=true"]).leader_elect);
        let t = run(&[
            "--leader-election-lease-duration",
            "6s",
            "--leader-election-renew-deadline",
            "4s",
            "--leader-election-retry-period",
            "500ms",
        ]);
        assert_eq!(t.leader_election_lease_duration, std::time::Duration::from_secs(6));
        assert_eq!(t.leader_election_renew_deadline, std::time::Duration::from_secs(4));
        assert_eq!(t.leader_election_retry_period, std::time::Duration::from_millis(500));
        // The flag's earlier name still works.
        assert_eq!(
            run(&["--leader-election-duration", "20s"]).leader_election_lease_duration,
            std::time::Duration::from_secs(20)
        );
        assert!(Cli::try_parse_from(["extdns", "run", "--leader-elect=maybe"]).is_err());
    }

    fn parse_run(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_external_dns_compatible([&["extdns", "run"][..], args].concat())?;
        let Command::Run(run) = cli.command else { panic!("expected run") };
        Ok(run)
    }

    #[test]
    fn parses_an_external_dns_command_line() {
        // As in an external-dns Deployment's args: repeated --source, kingpin booleans in all
        // three forms, and --pod-source-domain.
        let run = parse_run(&[
            "--source=service",
            "--source=pod",
            "--source=node",
            "--no-exclude-unschedulable",
            "--ignore-non-host-network-pods=false",
            "--publish-internal-services",
            "--combine-fqdn-annotation=true",
            "--expose-internal-ipv6=false",
            "--no-leader-elect",
            "--fqdn-template={{.Name}}.pods.example.org",
            "--pod-source-domain=example.org",
            "--namespace=kube-system",
        ])
        .expect("parses");
        let s = &run.source;
        assert_eq!(
            s.source,
            vec![crate::source::SourceKind::Service, crate::source::SourceKind::Pod, crate::source::SourceKind::Node]
        );
        assert!(!s.exclude_unschedulable && !s.ignore_non_host_network_pods && !s.expose_internal_ipv6);
        assert!(s.publish_internal_services && s.combine_fqdn_annotation);
        assert!(!s.ignore_hostname_annotation && !s.publish_host_ip, "untouched booleans keep their defaults");
        assert!(!run.leader_elect);
        assert_eq!((s.pod_source_domain.as_str(), s.namespace.as_str()), ("example.org", "kube-system"));
        // The form external-dns users write most: a bare default-true flag.
        let run = parse_run(&["--ignore-non-host-network-pods", "--exclude-unschedulable"]).expect("parses");
        assert!(run.source.ignore_non_host_network_pods && run.source.exclude_unschedulable);
        let d = parse_run(&[]).expect("parses");
        assert!(d.source.ignore_non_host_network_pods && d.source.exclude_unschedulable && d.leader_elect);
        assert!(!d.source.publish_internal_services && d.source.pod_source_domain.is_empty());
        assert!(parse_run(&["--publish-internal-services=maybe"]).is_err());
        assert!(parse_run(&["--no-namespace"]).is_err(), "only booleans have a --no- form");
        // render takes the source flags the same way.
        let cli =
            Cli::try_parse_external_dns_compatible(["extdns", "render", "-f", "x.yaml", "--no-exclude-unschedulable"])
                .expect("parses");
        let Command::Render(r) = cli.command else { panic!("expected render") };
        assert!(!r.source.exclude_unschedulable);
    }

    #[test]
    fn every_boolean_flag_takes_the_three_kingpin_forms() {
        let cmd = Cli::command_external_dns_compatible();
        let run = cmd.find_subcommand("run").expect("run");
        let booleans: Vec<(String, bool)> = run
            .get_arguments()
            .filter(|a| external_dns::is_boolean(a))
            .map(|a| {
                let default = a.get_default_values().first().and_then(|v| v.to_str()) == Some("true");
                (a.get_long().expect("long flag").to_string(), default)
            })
            .collect();
        let names: Vec<&str> = booleans.iter().map(|(n, _)| n.as_str()).collect();
        // Fails when a boolean flag is added without the kingpin forms (or this list is stale).
        assert_eq!(
            names,
            [
                "leader-elect",
                "namespaced-ambient-credentials",
                "namespaced-custom-endpoint",
                "namespaced-embedded",
                "combine-fqdn-annotation",
                "ignore-hostname-annotation",
                "ignore-ingress-tls-spec",
                "ignore-ingress-rules-spec",
                "publish-internal-services",
                "publish-host-ip",
                "always-publish-not-ready-addresses",
                "expose-internal-ipv6",
                "exclude-unschedulable",
                "ignore-non-host-network-pods",
            ]
        );
        for arg in run.get_arguments() {
            assert!(
                !matches!(arg.get_action(), clap::ArgAction::SetTrue | clap::ArgAction::SetFalse),
                "--{:?} is a switch without the kingpin forms",
                arg.get_long()
            );
        }
        for (name, default) in &booleans {
            let value = |flag: String| -> bool {
                let m = Cli::command_external_dns_compatible()
                    .try_get_matches_from(external_dns::rewrite_negations(
                        &Cli::command_external_dns_compatible(),
                        ["extdns", "run", flag.as_str()].map(OsString::from).to_vec(),
                    ))
                    .unwrap_or_else(|e| panic!("{flag}: {e}"));
                let run = m.subcommand_matches("run").expect("run");
                let id = run.ids().find(|id| id.as_str().replace('_', "-") == *name).expect("id").clone();
                *run.get_one::<bool>(id.as_str()).expect("bool value")
            };
            assert!(value(format!("--{name}")), "--{name}");
            assert!(value(format!("--{name}=true")), "--{name}=true");
            assert!(!value(format!("--{name}=false")), "--{name}=false");
            assert!(!value(format!("--no-{name}")), "--no-{name}");
            let unset = Cli::command_external_dns_compatible().try_get_matches_from(["extdns", "run"]).expect("parses");
            let run = unset.subcommand_matches("run").expect("run");
            let id = name.replace('-', "_");
            assert_eq!(*run.get_one::<bool>(&id).expect("default"), *default, "--{name} default");
        }
    }

    #[test]
    fn external_dns_flags_without_a_counterpart_are_refused_with_what_to_use() {
        let refused = |args: &[&str]| parse_run(args).expect_err("refused");
        let e = refused(&["--source=service", "--provider=aws"]);
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert_eq!(
            e.to_string(),
            "error: --provider is an external-dns flag that extdns does not take; instead: a DNSProvider or ClusterDNSProvider with one backend block in its spec: route53, cloudflare, azure, azurePrivateDns, google, rfc2136, powerdns, webhook, inMemory or embedded\n"
        );
        assert!(refused(&["--google-project=my-project"]).to_string().contains("instead: spec.google.project of"));
        assert!(refused(&["--google-batch-change-interval=2s"])
            .to_string()
            .contains("instead: spec.google.batchChangeInterval of"));
        assert!(refused(&["--txt-owner-id", "cluster-a"])
            .to_string()
            .contains("instead: spec.registry.txt.ownerId of"));
        assert!(refused(&["--domain-filter=example.org"]).to_string().contains("instead: spec.domains.include of"));
        assert!(refused(&["--policy=upsert-only"]).to_string().contains("instead: spec.policy of"));
        assert!(refused(&["--no-aws-evaluate-target-health"])
            .to_string()
            .contains("--no-aws-evaluate-target-health is an external-dns flag that extdns does not take; instead: spec.route53.evaluateTargetHealth of"));
        assert!(refused(&["--interval=1m"]).to_string().contains("spec.resyncInterval"));
        for (flag, field) in [
            ("--azure-config-file=/etc/kubernetes/azure.json", "spec.azure.credentials.azureConfigSecretRef"),
            ("--azure-resource-group=rg", "spec.azure.resourceGroup"),
            ("--azure-subscription-id=s", "spec.azure.subscriptionId"),
            ("--azure-user-assigned-identity-client-id=c", "spec.azure.userAssignedIdentityClientId"),
            ("--azure-zones-cache-duration=1h", "spec.resyncInterval"),
            ("--azure-maxretries-count=3", "spec.azure.maxAttempts"),
        ] {
            assert!(refused(&[flag]).to_string().contains(&format!("instead: {field}")), "{flag}");
        }
        // A flag neither program knows is clap's ordinary error.
        let e = refused(&["--no-such-flag"]);
        assert!(e.to_string().contains("unexpected argument '--no-such-flag'"), "{e}");
        // After `--` nothing is a flag.
        assert!(
            external_dns::refuse_external_dns_flags(&["extdns", "run", "--", "--provider"].map(OsString::from)).is_ok()
        );
    }

    #[test]
    fn render_requires_files() {
        assert!(Cli::try_parse_from(["extdns", "render"]).is_err());
        let cli = Cli::try_parse_from(["extdns", "render", "-f", "a.yaml", "b.yaml"]).unwrap();
        let Command::Render(r) = cli.command else { panic!("expected render") };
        assert_eq!(r.files.len(), 2);
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        Cli::command_external_dns_compatible().debug_assert();
    }
}
