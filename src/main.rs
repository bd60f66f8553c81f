mod alloc;
use std::process::ExitCode;
use std::sync::Arc;

use extdns::config::{Cli, Command, Controller, LogFormat, RunArgs};
use extdns::controller;
use extdns::metrics::Metrics;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn,tower=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "connecting to the Kubernetes API failed: set KUBECONFIG or run in a cluster");
            return ExitCode::from(1);
        }
    };
    // Bad source flags stop the process here, not on every object later.
    let source_cfg = match extdns::source::SourceConfig::new(&args.source) {
        // Nodes are cluster-scoped: their DNSEndpoints live in the operator's namespace.
        Ok(mut c) => {
            c.node_namespace = args.operator_namespace.clone();
            c
        }
        Err(e) => {
            error!(error = %e, "invalid source flags");
            return ExitCode::from(2);
        }
    };
    let metrics = Arc::new(Metrics::default());
    // Every condition of readiness exists before /readyz is served: it answers 503 until
    // the caches are listed and the election knows who leads.
    let provider_ready = args.controllers.contains(&Controller::Provider).then(|| metrics.gate("provider caches"));
    let source_ready = args.controllers.contains(&Controller::Source).then(|| metrics.gate("source caches"));
    let leader_ready = metrics.gate("leader election");
    // The process's own tasks: when one of them ends, the process exits so that Kubernetes
    // restarts it.
    let mut tasks: tokio::task::JoinSet<Result<(), String>> = tokio::task::JoinSet::new();
    let addr = args.metrics_addr;
    let m = metrics.clone();
    tasks.spawn(async move {
        extdns::metrics::serve(addr, m).await.map_err(|e| format!("serving metrics on {addr} failed: {e}"))
    });
    info!(version = env!("CARGO_PKG_VERSION"), controllers = ?args.controllers, "starting extdns");
    let leadership = match start_leadership(&args, &client, &metrics) {
        Ok(l) => l,
        Err(code) => return code,
    };
    tasks.spawn(follow_leadership(leadership.clone(), metrics.leader.clone(), leader_ready));
    if let Some(ready) = provider_ready {
        let settings = controller::provider::Settings {
            operator_namespace: args.operator_namespace.clone(),
            coalesce: args.coalesce_window,
            backend_timeout: args.backend_timeout,
            status_concurrency: args.status_concurrency,
            leader: leadership.clone(),
            tenancy: args.tenancy.clone(),
            budget: controller::provider::budget::Limits {
                records: args.max_records_per_namespace,
                bytes: args.max_record_bytes_per_namespace,
            },
        };
        let (client, metrics) = (client.clone(), metrics.clone());
        tasks.spawn(async move {
            let r = controller::provider::run(client, settings, metrics, ready).await;
            Err(r.err().map_or_else(|| "the provider controller ended".to_string(), |e| e.to_string()))
        });
    }
    if let Some(ready) = source_ready {
        // Followers run it too, with warm caches, and write nothing until they lead.
        let (client, metrics, leadership) = (client.clone(), metrics.clone(), leadership.clone());
        tasks.spawn(async move {
            let r = controller::source::run(client, source_cfg, metrics, leadership, ready).await;
            Err(r.err().map_or_else(|| "the source controller ended".to_string(), |e| e.to_string()))
        });
    }
    let code = supervise(tasks).await;
    // Hands the Lease over now rather than after a lease duration.
    leadership.step_down().await;
    code
}

/// Leader election as the flags say, or a leadership that always leads.
fn start_leadership(
    args: &RunArgs,
    client: &kube::Client,
    metrics: &Arc<Metrics>,
) -> Result<controller::leader::Leadership, ExitCode> {
    if !args.leader_elect {
        return Ok(controller::leader::Leadership::always());
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let settings = controller::leader::ElectionSettings {
        namespace: args.operator_namespace.clone(),
        lease_name: args.leader_election_lease.clone(),
        identity,
        lease_duration: args.leader_election_lease_duration,
        renew_deadline: args.leader_election_renew_deadline,
        retry_period: args.leader_election_retry_period,
    };
    if let Err(e) = settings.validate() {
        error!(error = %e, "invalid leader election flags");
        return Err(ExitCode::from(2));
    }
    Ok(controller::leader::start(client.clone(), settings, metrics.clone()))
}

/// Mirrors leadership into the `leader` gauge and opens the readiness gate once the election
/// knows who leads; ends (an error) when the election cannot go on.
async fn follow_leadership(
    leadership: controller::leader::Leadership,
    gauge: prometheus_client::metrics::gauge::Gauge,
    ready: extdns::metrics::Gate,
) -> Result<(), String> {
    let mut leading = leadership.subscribe();
    let known = leadership.known();
    let mut known = std::pin::pin!(known);
    let mut ready = Some(ready);
    loop {
        gauge.set(i64::from(*leading.borrow_and_update()));
        tokio::select! {
            changed = leading.changed() => {
                if changed.is_err() {
                    return Err("the leadership state is gone".to_string());
                }
            }
            _ = &mut known, if ready.is_some() => {
                if let Some(gate) = ready.take() {
                    gate.open();
                }
            }
            _ = leadership.gave_up() => return Err("leader election cannot be restarted".to_string()),
        }
    }
}

/// Waits for the first of the process's tasks to end (the process exits with 1, so that
/// Kubernetes restarts it) or for a stop signal. Losing the Lease ends no task: a follower
/// keeps serving embedded DNS and may lead again.
async fn supervise(mut tasks: tokio::task::JoinSet<Result<(), String>>) -> ExitCode {
    tokio::select! {
        Some(done) = tasks.join_next() => {
            let why = match done {
                Ok(Ok(())) => "a task ended".to_string(),
                Ok(Err(why)) => why,
                Err(e) => format!("a task {}", extdns::controller::supervise::stopped::<()>(Err(e)).err().map(|s| s.to_string()).unwrap_or_default()),
            };
            error!(reason = %why, "exiting so that the process is restarted");
            ExitCode::from(1)
        }
        signal = shutdown_signal() => {
            info!(signal, "stopping");
            ExitCode::SUCCESS
        }
    }
}

/// SIGINT or SIGTERM (what Kubernetes sends to a Pod it stops).
async fn shutdown_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    }
}

fn render(args: extdns::config::RenderArgs) -> ExitCode {
    let inputs = match extdns::source::render::read_inputs(&args.files) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rendered = match extdns::source::render::render(&inputs, &args.source) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.plan {
        print!("{rendered}");
        return ExitCode::SUCCESS;
    }
    match extdns::render_plan::plan_text(&rendered, &inputs, Some(&args.owner_id)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::try_parse_external_dns_compatible(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Crdgen => match extdns::crd::crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: serialising CRDs: {e}");
                ExitCode::from(1)
            }
        },
        Command::Version => {
            println!("extdns {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Render(args) => render(args),
        Command::Run(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(args)),
            Err(e) => {
                eprintln!("error: starting the async runtime: {e}");
                ExitCode::from(1)
            }
        },
    }
}
