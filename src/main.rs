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
        Ok(c) => c,
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
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(!args.leader_elect);
    if args.leader_elect {
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let settings = controller::leader::ElectionSettings {
            namespace: args.operator_namespace.clone(),
            lease_name: args.leader_election_lease.clone(),
            identity,
            lease_duration: args.leader_election_duration,
            renew_every: (args.leader_election_duration / 3).max(std::time::Duration::from_millis(500)),
        };
        tokio::spawn(controller::leader::run(client.clone(), settings, leader_tx));
    } else {
        drop(leader_tx);
    }
    let mut tasks = tokio::task::JoinSet::new();
    if args.controllers.contains(&Controller::Provider) {
        let settings = controller::provider::Settings {
            operator_namespace: args.operator_namespace.clone(),
            coalesce: args.coalesce_window,
            backend_timeout: args.backend_timeout,
            status_concurrency: args.status_concurrency,
            leader: leader_rx.clone(),
            tenancy: args.tenancy.clone(),
        };
        tasks.spawn(controller::provider::run(client.clone(), settings, metrics.clone()));
    }
    if args.controllers.contains(&Controller::Source) {
        // The source controller only writes, so it starts once this replica leads.
        let mut leader = leader_rx.clone();
        let (client, metrics) = (client.clone(), metrics.clone());
        tasks.spawn(async move {
            if leader.wait_for(|l| *l).await.is_ok() || *leader.borrow() {
                controller::source::run(client, source_cfg, metrics).await;
            }
        });
    }
    // A replica that loses the lease exits, so a restart begins from a clean follower state.
    let mut lost = leader_rx.clone();
    let lost_leadership = async move {
        if lost.wait_for(|l| *l).await.is_err() {
            return std::future::pending().await;
        }
        if lost.wait_for(|l| !*l).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::select! {
        _ = lost_leadership => {
            error!("lost leadership; exiting so that this replica restarts as a follower");
            ExitCode::from(1)
        }
        _ = tasks.join_next() => {
            error!("a controller stopped; exiting so the process is restarted");
            ExitCode::from(1)
        }
        _ = tokio::signal::ctrl_c() => {
            info!("interrupted; stopping");
            ExitCode::SUCCESS
        }
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
