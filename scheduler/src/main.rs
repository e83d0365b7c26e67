//! fresco-scheduler: placement, per-project concurrency and the async queue.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fresco_common::cli::{self, ConfigArgs};
use fresco_scheduler::service::Scheduler;
use fresco_scheduler::settings::Settings;

/// Fresco's scheduler: agent registry, placement, per-project concurrency and the async queue.
#[derive(Parser)]
#[command(name = "fresco-scheduler", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    cli::run(run)
}

fn run(args: Cli) -> anyhow::Result<()> {
    let loaded = args.config.load()?;
    let settings = Settings::from_config(&loaded.raw)?;
    loaded.init_logging(settings.default.debug);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let scheduler = Scheduler::start(settings).await?;
        let stop = scheduler.stop_handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            log::info!("stopping");
            stop.stop(true).await;
        });
        scheduler.serve().await?;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            log::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
