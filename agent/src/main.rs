//! fresco-agent: runs functions in hardened Docker containers on one compute node.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use anyhow::{bail, Context};
use clap::Parser;
use fresco_agent::config::Settings;
use fresco_agent::engine::DockerEngine;
use fresco_agent::http::AppState;
use fresco_agent::service::Agent;
use fresco_agent::{heartbeat, http};
use fresco_common::cli::{self, ConfigArgs};
use fresco_common::conf::DefaultSection;
use fresco_common::ticket::{AgentSigner, TicketVerifier};
use fresco_common::tls::InternalTls;

/// Fresco's compute agent: runs functions in hardened Docker containers on this node.
#[derive(Parser)]
#[command(name = "fresco-agent", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    // The agent's own unprivileged unpacking helper (an internal re-exec with arguments of its
    // own): done and exited before the command line is parsed.
    fresco_agent::code::run_unpack_helper_if_asked();
    cli::run(run)
}

fn run(args: Cli) -> anyhow::Result<()> {
    let loaded = args.config.load()?;
    let raw = &loaded.raw;
    loaded.init_logging(raw.section::<DefaultSection>()?.debug);
    let mut settings = Settings::from_raw(raw)?;
    let verifier = TicketVerifier::from_file(&settings.ticket_verify_key_file)?;
    if !rustix::process::geteuid().is_root() {
        log::warn!(
            "fresco-agent is not running as root: it cannot give sandboxes their own uid, freeze \
             them or build their network, so function containers will fail"
        );
    }
    // The agent's own credential: without it no scheduler accepts a heartbeat.
    AgentSigner::from_file(&settings.agent_key_file, &settings.agent_id)
        .context("[internal_auth] agent_key_file")?;
    let tls = InternalTls::from_section(&settings.tls)?;
    let core = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.cpus.clamp(2, 8) as usize)
        .thread_name("fresco-core")
        .enable_all()
        .build()?;
    let engine = core
        .block_on(DockerEngine::connect(&settings.docker_host))
        .with_context(|| format!("cannot reach the docker engine at {}", settings.docker_host))?;
    if !settings.shim_path.is_file() {
        bail!(
            "shim {} is missing ([agent] shim_path)",
            settings.shim_path.display()
        );
    }
    let listener = std::net::TcpListener::bind((settings.bind_host.as_str(), settings.bind_port))
        .with_context(|| {
        format!(
            "cannot listen on {}:{}",
            settings.bind_host, settings.bind_port
        )
    })?;
    let addr = listener.local_addr()?;
    if settings.advertise_url.is_empty() {
        settings.advertise_url = format!("{}://{addr}", tls.scheme());
    }
    let advertise_url = settings.advertise_url.clone();
    let agent_id = settings.agent_id.clone();
    let memory_mb = settings.memory_mb;
    let agent = Arc::new(Agent::new(settings, Arc::new(engine), verifier)?);
    core.block_on(agent.reconcile())?;
    core.block_on(agent.refresh_images());
    let heartbeats = core.spawn(heartbeat::run(Arc::clone(&agent), advertise_url));
    let reaper = core.spawn(heartbeat::reap_idle(Arc::clone(&agent)));
    let prewarmer = core.spawn(Arc::clone(&agent).keep_prewarmed());

    let scheme = tls.scheme();
    log::info!("agent {agent_id} offers {memory_mb} MB, listening on {scheme}://{addr}");
    // Test harnesses and scripts read this line to learn the (possibly ephemeral) port.
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "fresco-agent {agent_id} listening on {scheme}://{addr}"
    )?;
    stdout.flush()?;

    let state = web::Data::new(AppState {
        agent: Arc::clone(&agent),
        metrics: Arc::default(),
        core: core.handle().clone(),
    });
    let server_tls = tls.server_config();
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(http::configure::<DockerEngine>)
        })
        .workers(2)
        .shutdown_timeout(5);
        match server_tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run()
        .await
    })?;
    log::info!("stopping: removing this agent's containers");
    heartbeats.abort();
    reaper.abort();
    prewarmer.abort();
    core.block_on(agent.shutdown());
    Ok(())
}
