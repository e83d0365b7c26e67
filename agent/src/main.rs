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
    #[command(subcommand)]
    local: Option<Local>,
}

/// The local emulator (`fresco_agent::local`): the agent's way of running functions, on a
/// developer's machine, without a control plane.
#[derive(clap::Subcommand)]
enum Local {
    /// Run one function once and print its result (stdout) and log (stderr); the status is 1
    /// when the function did not succeed (its error JSON on stdout)
    RunLocal(RunLocalArgs),
    /// Serve a directory of functions on loopback: POST /v1/functions/{name}/invoke
    ServeLocal(ServeLocalArgs),
}

/// What both local commands share.
#[derive(clap::Args)]
struct LocalArgs {
    /// The fresco-shim binary [default: FRESCO_SHIM_PATH, else [agent] shim_path]
    #[arg(long, value_name = "PATH")]
    shim_path: Option<std::path::PathBuf>,
    /// Directory the emulator's state (runtime sockets, unpacked code) goes under, in a new
    /// directory removed at the end [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct RunLocalArgs {
    /// Runtime image, e.g. fresco/python3:dev
    #[arg(long, value_name = "IMAGE")]
    runtime_image: String,
    /// python or provided [default: told by the image's name]
    #[arg(long, value_name = "KIND")]
    runtime_kind: Option<String>,
    /// Handler as the runtime understands it, e.g. main.handler
    #[arg(long)]
    handler: String,
    /// Directory holding the function's code
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "package",
        required_unless_present = "package"
    )]
    code_dir: Option<std::path::PathBuf>,
    /// Code package (zip or tar.gz), as uploaded to the platform
    #[arg(long, value_name = "FILE")]
    package: Option<std::path::PathBuf>,
    /// The event (JSON); "-" reads it from stdin
    #[arg(long, default_value = "{}")]
    event: String,
    /// Function name (as the function sees it in its context)
    #[arg(long, default_value = "local")]
    name: String,
    #[arg(long, default_value_t = fresco_agent::local::DEFAULT_MEMORY_MB)]
    memory_mb: i32,
    #[arg(long, default_value_t = fresco_agent::local::DEFAULT_TIMEOUT_S)]
    timeout_s: i32,
    /// Environment variable NAME=VALUE (repeatable)
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    local: LocalArgs,
}

#[derive(clap::Args)]
struct ServeLocalArgs {
    /// Directory of functions: one subdirectory each, with a fresco-function.json
    #[arg(long, value_name = "DIR")]
    dir: std::path::PathBuf,
    /// Loopback address to listen on
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    listen: String,
    #[command(flatten)]
    local: LocalArgs,
}

fn main() -> ExitCode {
    // The agent's own unprivileged unpacking helper (an internal re-exec with arguments of its
    // own): done and exited before the command line is parsed.
    fresco_agent::code::run_unpack_helper_if_asked();
    cli::run(run)
}

fn run(args: Cli) -> anyhow::Result<()> {
    if let Some(command) = args.local {
        return run_local(&args.config, command);
    }
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

/// The local commands' configuration: the files given (`--config-file`, `--config-dir`), or
/// the built-in defaults when none is given (a developer's machine has no agent's file).
fn local_options(
    config: &ConfigArgs,
    local: LocalArgs,
) -> anyhow::Result<fresco_agent::local::Options> {
    let raw = if config.config_files.is_empty() && config.config_dirs.is_empty() {
        fresco_common::conf::RawConfig::default()
    } else {
        config.load()?.raw
    };
    let shim_path = local
        .shim_path
        .or_else(|| std::env::var_os("FRESCO_SHIM_PATH").map(Into::into));
    Ok(fresco_agent::local::Options {
        config: raw,
        shim_path,
        state_dir: local.state_dir,
    })
}

fn run_local(config: &ConfigArgs, command: Local) -> anyhow::Result<()> {
    use fresco_agent::local::{self, Emulator};
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let core = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fresco-local")
        .enable_all()
        .build()?;
    match command {
        Local::RunLocal(args) => {
            let event = if args.event == "-" {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)
                    .context("cannot read the event from stdin")?;
                local::parse_event(&text)?
            } else {
                local::parse_event(args.event.as_bytes())?
            };
            let environment = args
                .env
                .iter()
                .map(|text| local::parse_env(text))
                .collect::<Result<_, _>>()?;
            let function = local::LocalFunction {
                runtime_kind: local::manifest::runtime_kind(
                    args.runtime_kind.as_deref(),
                    &args.runtime_image,
                )?,
                name: args.name.clone(),
                image: args.runtime_image,
                handler: args.handler,
                memory_mb: args.memory_mb,
                timeout_s: args.timeout_s,
                environment,
                code: match (args.code_dir, args.package) {
                    (_, Some(package)) => local::Code::Package(package),
                    (Some(path), None) => local::Code::Dir {
                        path,
                        skip: Vec::new(),
                    },
                    (None, None) => bail!("give --code-dir or --package"),
                },
            };
            let options = local_options(config, args.local)?;
            let result = core.block_on(async {
                let mut emulator = Emulator::start(options).await?;
                let run = async {
                    emulator.load(function).await?;
                    emulator.invoke(&args.name, event).await
                };
                // Interrupted (Ctrl-C), the container and the state are removed all the same.
                let result = tokio::select! {
                    result = run => result.map_err(anyhow::Error::from),
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                };
                emulator.shutdown().await;
                result
            })?;
            let answer = local::answer(&result);
            eprint!("{}", result.logs);
            let mut stdout = std::io::stdout();
            writeln!(stdout, "{}", answer.body)?;
            stdout.flush()?;
            if !answer.succeeded {
                bail!(
                    "the function ended with status {} (execution {})",
                    answer.status,
                    answer.execution_id
                );
            }
            Ok(())
        }
        Local::ServeLocal(args) => {
            let listen = local::loopback_listen(&args.listen)?;
            let functions = local::manifest::read_dir(&args.dir)?;
            let options = local_options(config, args.local)?;
            let emulator = core.block_on(async {
                let mut emulator = Emulator::start(options).await?;
                for function in functions {
                    if let Err(e) = emulator.load(function).await {
                        emulator.shutdown().await;
                        return Err(e);
                    }
                }
                Ok(emulator)
            })?;
            let emulator = Arc::new(emulator);
            let listener = match std::net::TcpListener::bind(listen) {
                Ok(listener) => listener,
                Err(e) => {
                    core.block_on(emulator.shutdown());
                    return Err(e).with_context(|| format!("cannot listen on {listen}"));
                }
            };
            let addr = listener.local_addr()?;
            let reaper = core.spawn(local::reap_idle(Arc::clone(emulator.agent())));
            // Scripts and tests read this line to learn the (possibly ephemeral) port.
            let mut stdout = std::io::stdout();
            writeln!(
                stdout,
                "fresco-agent serve-local {} listening on http://{addr} ({})",
                emulator.agent().settings().agent_id,
                emulator.names().join(", ")
            )?;
            stdout.flush()?;
            let state = web::Data::new(local::http::LocalState {
                emulator: Arc::clone(&emulator),
                core: core.handle().clone(),
            });
            let served = actix_web::rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .configure(local::http::configure)
                })
                .workers(2)
                .shutdown_timeout(5)
                .listen(listener)?
                .run()
                .await
            });
            reaper.abort();
            core.block_on(emulator.shutdown());
            served?;
            Ok(())
        }
    }
}
