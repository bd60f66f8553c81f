use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
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
    let addr = args.metrics_addr;
    let m = metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = extdns::metrics::serve(addr, m).await {
            error!(error = %e, %addr, "serving metrics failed");
        }
    });
    info!(version = env!("CARGO_PKG_VERSION"), controllers = ?args.controllers, "starting extdns");
    let leadership = if args.leader_elect {
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
            return ExitCode::from(2);
        }
        controller::leader::start(client.clone(), settings)
    } else {
        controller::leader::Leadership::always()
    };
    let mut leading = leadership.subscribe();
    let gauge = metrics.leader.clone();
    tokio::spawn(async move {
        loop {
            gauge.set(i64::from(*leading.borrow_and_update()));
            if leading.changed().await.is_err() {
                return;
            }
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    if args.controllers.contains(&Controller::Provider) {
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
        tasks.spawn(controller::provider::run(client.clone(), settings, metrics.clone()));
    }
    if args.controllers.contains(&Controller::Source) {
        // Followers run it too, with warm caches, and write nothing until they lead.
        tasks.spawn(controller::source::run(client.clone(), source_cfg, metrics.clone(), leadership.clone()));
    }
    // Losing the Lease does not end the process: a follower keeps serving embedded DNS and
    // may lead again.
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let code = tokio::select! {
        _ = tasks.join_next() => {
            error!("a controller stopped; exiting so the process is restarted");
            ExitCode::from(1)
        }
        signal = shutdown_signal() => {
            info!(signal, "stopping");
            ExitCode::SUCCESS
        }
    };
    // Hands the Lease over now rather than after a lease duration.
    leadership.step_down().await;
    code
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
    let cli = Cli::parse();
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
