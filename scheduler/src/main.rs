//! fresco-scheduler: `fresco-scheduler [--config-file PATH]`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use fresco_common::conf::{RawConfig, DEFAULT_CONFIG_FILE};
use fresco_scheduler::service::Scheduler;
use fresco_scheduler::settings::Settings;

const USAGE: &str = "usage: fresco-scheduler [--config-file PATH]";

fn main() -> anyhow::Result<()> {
    let mut config_file = PathBuf::from(DEFAULT_CONFIG_FILE);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config-file" => {
                config_file = args.next().context("--config-file needs a path")?.into();
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => match other.strip_prefix("--config-file=") {
                Some(path) => config_file = path.into(),
                None => bail!("unknown argument {other:?}\n{USAGE}"),
            },
        }
    }
    let raw = RawConfig::load(&config_file)?;
    let settings = Settings::from_config(&raw)?;
    let level = if settings.default.debug {
        "debug"
    } else {
        "info"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    for (section, option) in raw.unknown_options() {
        log::warn!(
            "unknown option [{section}] {option} in {}",
            config_file.display()
        );
    }
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
