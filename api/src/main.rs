//! fresco-api: serves Fresco's REST API.

use std::process::ExitCode;

use actix_web::{web, HttpServer};
use anyhow::Context;
use clap::Parser;
use fresco_api::service::{build_state, ApiConfig};
use fresco_common::cli::{self, ConfigArgs};
use fresco_common::conf::{self, RawConfig};
use fresco_common::tls::InternalTls;

/// Fresco's REST API: functions, versions, aliases, runtimes, quotas and executions.
#[derive(Parser)]
#[command(name = "fresco-api", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Apply pending database migrations and exit
    #[arg(long, group = "action")]
    db_sync: bool,
    /// Print the sample configuration generated from the code and exit
    #[arg(long, group = "action")]
    print_sample_config: bool,
    /// Print the default policy rules and exit
    #[arg(long, group = "action")]
    print_default_policy: bool,
}

fn main() -> ExitCode {
    cli::run(|args: Cli| -> anyhow::Result<()> {
        if args.print_sample_config {
            print!("{}", conf::sample_config());
            return Ok(());
        }
        if args.print_default_policy {
            print!("{}", fresco_auth::policy::default_policy_yaml());
            return Ok(());
        }
        let loaded = args.config.load()?;
        let config = ApiConfig::from_raw(&loaded.raw)?;
        loaded.init_logging(config.default.debug);
        if args.db_sync {
            db_sync(&config)
        } else {
            serve(&loaded.raw, &config)
        }
    })
}

fn db_sync(config: &ApiConfig) -> anyhow::Result<()> {
    let mut conn = fresco_store::connect(&config.database.connection)
        .context("cannot connect to the database")?;
    let applied = fresco_store::migrate(&mut conn).map_err(anyhow::Error::msg)?;
    if applied.is_empty() {
        println!("database is up to date");
    }
    for version in applied {
        println!("applied migration {version}");
    }
    Ok(())
}

fn serve(raw: &RawConfig, config: &ApiConfig) -> anyhow::Result<()> {
    let workers = match config.api.workers {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let address = (config.api.bind_host.clone(), config.api.bind_port);
    let tls = InternalTls::from_section(&config.internal_tls)?;
    actix_web::rt::System::new().block_on(async move {
        let state = web::Data::new(build_state(raw)?);
        log::info!(
            "fresco-api listening on {}:{} ({}) with {workers} workers",
            address.0,
            address.1,
            tls.scheme()
        );
        let server = HttpServer::new(move || fresco_api::http::app(state.clone())).workers(workers);
        match tls.server_config() {
            Some(config) => server.bind_rustls_0_23(address, config)?,
            None => server.bind(address)?,
        }
        .run()
        .await?;
        Ok(())
    })
}
