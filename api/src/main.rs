//! fresco-api: serves Fresco's REST API.

use std::path::PathBuf;

use actix_web::{web, HttpServer};
use anyhow::{bail, Context};
use diesel::Connection;
use fresco_api::service::{build_state, ApiConfig};
use fresco_common::conf::{self, RawConfig};
use fresco_common::tls::InternalTls;

const USAGE: &str = "usage: fresco-api [--config-file PATH] [--db-sync | --print-sample-config | --print-default-policy]

  --config-file PATH      configuration file (default /etc/fresco/fresco.conf)
  --db-sync               apply pending database migrations and exit
  --print-sample-config   print the sample configuration generated from the code and exit
  --print-default-policy  print the default policy rules and exit";

enum Action {
    Serve,
    DbSync,
}

fn main() -> anyhow::Result<()> {
    let mut config_file = PathBuf::from(conf::DEFAULT_CONFIG_FILE);
    let mut action = Action::Serve;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config-file" => {
                config_file = args.next().context("--config-file needs a path")?.into()
            }
            "--db-sync" => action = Action::DbSync,
            "--print-sample-config" => {
                print!("{}", conf::sample_config());
                return Ok(());
            }
            "--print-default-policy" => {
                print!("{}", fresco_auth::policy::default_policy_yaml());
                return Ok(());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let raw = RawConfig::load(&config_file)?;
    let config = ApiConfig::from_raw(&raw)?;
    let level = if config.default.debug {
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
    match action {
        Action::DbSync => db_sync(&config),
        Action::Serve => serve(&raw, &config),
    }
}

fn db_sync(config: &ApiConfig) -> anyhow::Result<()> {
    let mut conn = diesel::PgConnection::establish(&config.database.connection)
        .context("cannot connect to the database")?;
    let applied = fresco_api::db::migrate(&mut conn).map_err(anyhow::Error::msg)?;
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
