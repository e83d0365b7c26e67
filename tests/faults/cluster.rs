//! The fault suite's own cluster: a PostgreSQL cluster, a Docker daemon and a Keystone
//! instance that belong to the suite alone (so that it may crash and restart them without
//! touching the shared ones other tests use), and the real fresco-api (Keystone mode), two
//! fresco-schedulers and two fresco-agents on top, as child processes on free loopback ports.
//!
//! - PostgreSQL: `initdb` in a temp dir as the `postgres` user (as `tools/lib/postgres.sh`
//!   does), listening on 127.0.0.1 on a free port; restarted with `pg_ctl restart -m immediate`.
//! - Docker: a second `dockerd` with its own `--data-root`, `--exec-root`, `--pidfile` and
//!   unix socket, `--bridge=none` and no iptables/forwarding/masquerading; the runtime images
//!   are copied into it with `docker save | docker load`. The agents use it (`docker_host`).
//! - Keystone: a second uwsgi of the seeded Keystone (`tools/lib/keystone.sh` with its own
//!   `KEYSTONE_PORT`, sharing the state, so the seeded users and tokens are the same).
//!
//! Needs (as the end-to-end tests): `FRESCO_BIN_DIR`, `FRESCO_SHIM_PATH`,
//! `FRESCO_KEYSTONE_ENV` (the seeded Keystone's env file), root (for `runuser` and `dockerd`),
//! and the runtime images `fresco/python3:dev`, `fresco/provided:dev` in the shared engine.

#![allow(clippy::unwrap_used)] // a test harness: a failed set-up step should panic loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fresco_e2e::{
    agent_uid_base, free_port, function_form, functions_dir, key_pair, wait_until, zip_dir,
    AGENT_UIDS,
};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// The Docker client that matches the daemon (ENVIRONMENT.md).
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
pub const IMAGES: [&str; 2] = ["fresco/python3:dev", "fresco/provided:dev"];

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the fault suite through tools/test, which builds and starts what it needs")
    })
}

/// Runs a command to completion, panicking with its output when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn as_postgres(args: &[&str]) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]).args(args);
    command
}

fn pg_bin(tool: &str) -> String {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let dir = dirs.last().expect("a PostgreSQL version with initdb");
    dir.join(tool).display().to_string()
}

/// The suite's own PostgreSQL cluster.
pub struct Postgres {
    data: PathBuf,
    log: PathBuf,
    pub url: String,
    running: bool,
}

impl Postgres {
    pub fn start(dir: &Path) -> Postgres {
        let root = dir.join("pg");
        let run_dir = root.join("run");
        let data = root.join("data");
        std::fs::create_dir_all(&run_dir).unwrap();
        let password = uuid::Uuid::new_v4().simple().to_string();
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, &password).unwrap();
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&root));
        run(&mut as_postgres(&[
            &pg_bin("initdb"),
            "-D",
            &data.display().to_string(),
            // Local socket connections (only root and postgres reach the directory) are
            // trusted; TCP needs the password.
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-U",
            "postgres",
            "--pwfile",
            &pwfile.display().to_string(),
        ]));
        std::fs::remove_file(&pwfile).ok();
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            run_dir.display()
        );
        run(&mut as_postgres(&[
            &pg_bin("pg_ctl"),
            "-D",
            &data.display().to_string(),
            "-w",
            "-t",
            "60",
            "-l",
            &root.join("postgres.log").display().to_string(),
            "-o",
            &options,
            "start",
        ]));
        let postgres = Postgres {
            data,
            log: root.join("postgres.log"),
            url: format!("postgresql://fresco:{password}@127.0.0.1:{port}/fresco"),
            running: true,
        };
        let psql = |sql: &str| {
            run(&mut as_postgres(&[
                &pg_bin("psql"),
                "-h",
                &run_dir.display().to_string(),
                "-p",
                &port.to_string(),
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ]))
        };
        psql(&format!(
            "CREATE ROLE fresco LOGIN CREATEDB PASSWORD '{password}'"
        ));
        psql("CREATE DATABASE fresco OWNER fresco");
        postgres
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let data = self.data.display().to_string();
        let ctl = pg_bin("pg_ctl");
        let mut all = vec![ctl.as_str(), "-D", data.as_str()];
        all.extend_from_slice(args);
        as_postgres(&all)
    }

    /// A crash and a restart: every session dies, nothing is flushed first.
    pub fn restart_immediate(&self) {
        // `-l`: the new server must not inherit (and hold open) this command's output.
        let log = self.log.display().to_string();
        let status = self
            .pg_ctl(&["-m", "immediate", "-w", "-t", "60", "-l", &log, "restart"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(status.success(), "pg_ctl restart failed (see {log})");
    }

    pub fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            self.pg_ctl(&["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The suite's own Docker daemon.
pub struct Dockerd {
    root: PathBuf,
    child: Option<Child>,
    pub host: String,
}

impl Dockerd {
    pub fn start(dir: &Path) -> Dockerd {
        let root = dir.join("docker");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("exec")).unwrap();
        let mut daemon = Dockerd {
            host: format!("unix://{}", root.join("docker.sock").display()),
            root,
            child: None,
        };
        daemon.run_daemon();
        // The runtime images, from the shared engine (nothing can be pulled here).
        let started = Instant::now();
        let mut save = Command::new(DOCKER)
            .arg("save")
            .args(IMAGES)
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let status = Command::new(DOCKER)
            .args(["-H", &daemon.host, "load", "-q"])
            .stdin(Stdio::from(save.stdout.take().expect("save output")))
            .stdout(Stdio::null())
            .status()
            .expect("docker load");
        let saved = save.wait().expect("docker save");
        assert!(
            status.success() && saved.success(),
            "copying the runtime images failed"
        );
        eprintln!(
            "fault suite: own dockerd at {} with the runtime images in {:?}",
            daemon.host,
            started.elapsed()
        );
        daemon
    }

    fn answers(&self) -> bool {
        Command::new(DOCKER)
            .args(["-H", &self.host, "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn run_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("dockerd.log"))
            .unwrap();
        let root = &self.root;
        let child = Command::new(DOCKERD)
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .args(["-H", &self.host])
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--shutdown-timeout=2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        wait_until(Duration::from_secs(60), "the suite's dockerd", || {
            self.answers()
        });
    }

    /// Stops the daemon (SIGTERM, as a service manager does); it stops its containers.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .arg(child.id().to_string())
                .status()
                .ok();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    child.kill().ok();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "dockerd runs already");
        self.run_daemon();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Dockerd {
    /// Removes every container of this daemon and stops it.
    pub fn shut_down(&mut self) {
        if self.child.is_none() {
            return;
        }
        // Its containers first (the agents were killed without cleaning up), then the daemon.
        if let Ok(out) = Command::new(DOCKER)
            .args(["-H", &self.host, "ps", "-aq"])
            .output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                Command::new(DOCKER)
                    .args(["-H", &self.host, "rm", "-f"])
                    .args(&ids)
                    .output()
                    .ok();
            }
        }
        self.stop();
    }
}

/// The suite's own Keystone (a second uwsgi of the seeded one, sharing its state).
pub struct Keystone {
    pub port: u16,
    state: String,
    script: PathBuf,
    /// This instance is the suite's own (else the shared one, never stopped).
    own: bool,
    running: bool,
}

impl Keystone {
    /// Starts the suite's own instance (`state`: the seeded Keystone's `FRESCO_STATE`).
    pub fn start(state: String) -> Keystone {
        let mut keystone = Keystone {
            port: free_port(),
            state,
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/lib/keystone.sh"),
            own: true,
            running: false,
        };
        keystone.start_again();
        keystone
    }

    /// The shared, seeded instance, for tests that do not stop Keystone.
    pub fn shared(seeded: &Seeded) -> Keystone {
        Keystone {
            port: seeded.get("KEYSTONE_PORT").parse().expect("KEYSTONE_PORT"),
            state: seeded.get("FRESCO_STATE").to_owned(),
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/lib/keystone.sh"),
            own: false,
            running: false,
        }
    }

    fn script(&self, verb: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(&self.script)
            .arg(verb)
            .env("KEYSTONE_PORT", self.port.to_string())
            .env("FRESCO_STATE", &self.state);
        command
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    pub fn start_again(&mut self) {
        assert!(self.own, "the shared Keystone is not the suite's to start");
        run(&mut self.script("start"));
        self.running = true;
    }

    /// Stops this instance only (by the pid in its own pid file).
    pub fn stop(&mut self) {
        assert!(self.own, "the shared Keystone is not the suite's to stop");
        run(&mut self.script("stop"));
        self.running = false;
    }

    /// A token for `user` (password from the seed), scoped to `project`.
    pub fn token(&self, seeded: &Seeded, user_key: &str, project_key: &str) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": seeded.get(&format!("{user_key}_USER")),
                "domain": {"id": "default"},
                "password": seeded.get(&format!("{user_key}_PASSWORD")),
            }}},
            "scope": {"project": {"name": seeded.get(project_key), "domain": {"id": "default"}}},
        }});
        let mut last = String::new();
        for _ in 0..5 {
            match Client::new()
                .post(format!("{}/auth/tokens", self.url()))
                .json(&body)
                .timeout(Duration::from_secs(30))
                .send()
            {
                Ok(r) if r.status().as_u16() == 201 => {
                    return r.headers()["x-subject-token"].to_str().unwrap().to_owned()
                }
                Ok(r) => last = format!("{}: {}", r.status(), r.text().unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("no token for {user_key}: {last}");
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            self.script("stop").output().ok();
        }
    }
}

/// What `tools/lib/keystone.sh seed` wrote (`FRESCO_KEYSTONE_ENV`).
pub struct Seeded(BTreeMap<String, String>);

impl Seeded {
    pub fn load() -> Seeded {
        let path = env("FRESCO_KEYSTONE_ENV");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the Keystone env file {path}: {e}"));
        Seeded(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("the Keystone env file has no {key}"))
    }
}

/// One Fresco process (the real binary), restartable, signalled by its pid.
pub struct Proc {
    pub name: String,
    pub port: u16,
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    rust_log: String,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &str, binary: PathBuf, config: PathBuf, dir: &Path, port: u16) -> Proc {
        let rust_log = if name.starts_with("agent") {
            // Each run's end is logged at debug level: the suite counts runs per execution.
            "info,fresco_agent::service=debug"
        } else {
            "info"
        };
        let mut proc = Proc {
            name: name.to_owned(),
            port,
            binary,
            config,
            log: dir.join(format!("{name}.log")),
            rust_log: rust_log.to_owned(),
            child: None,
        };
        proc.start();
        proc
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("--config-file")
            .arg(&self.config)
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let url = self.url();
        let name = self.name.clone();
        let child = &mut self.child;
        let log = &self.log;
        wait_until(
            Duration::from_secs(30),
            &format!("{name} to answer"),
            || {
                if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                    let text = std::fs::read_to_string(log).unwrap_or_default();
                    panic!("{name} exited with {status}: {text}");
                }
                Client::new()
                    .get(format!("{url}/healthcheck"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 503)
            },
        );
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        run(Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string()));
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/healthcheck` as JSON, or `None` when it does not answer within a second.
    pub fn health(&self) -> Option<Value> {
        Client::new()
            .get(format!("{}/healthcheck", self.url()))
            .timeout(Duration::from_secs(1))
            .send()
            .ok()?
            .json()
            .ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused process cannot die until it is continued.
            Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status()
                .ok();
        }
        self.kill9();
    }
}

/// Settings of the suite's stack.
pub struct Options {
    pub agents: usize,
    pub schedulers: usize,
    pub agent_memory_mb: u64,
    /// Seconds between an agent's heartbeats.
    pub heartbeat_interval: u64,
    /// Seconds of silence after which a scheduler takes an agent for down.
    pub agent_down_time: u64,
    /// Start a Keystone of the suite's own (else use the shared one, which is never stopped).
    pub own_keystone: bool,
    /// `[scheduler] async_max_in_flight`.
    pub async_max_in_flight: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            agents: 2,
            schedulers: 2,
            agent_memory_mb: 2048,
            heartbeat_interval: 1,
            agent_down_time: 4,
            own_keystone: true,
            async_max_in_flight: 64,
        }
    }
}

/// The whole stack.
pub struct Cluster {
    pub dir: PathBuf,
    pub seeded: Seeded,
    pub pg: Postgres,
    pub docker: Dockerd,
    pub keystone: Keystone,
    pub api: Proc,
    pub schedulers: Vec<Proc>,
    pub agents: Vec<Proc>,
    /// A project member's token (project A) and a cloud admin's.
    pub member: String,
    pub admin: String,
    pub http: Client,
}

impl Cluster {
    pub fn start(options: Options) -> Cluster {
        let started = Instant::now();
        let bin = PathBuf::from(env("FRESCO_BIN_DIR"));
        let shim = env("FRESCO_SHIM_PATH");
        let seeded = Seeded::load();
        // Short and traversable: agents put unix sockets below it, PostgreSQL runs as postgres.
        let dir = std::env::temp_dir().join(format!(
            "ff-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chmod").arg("755").arg(&dir));
        // Keystone takes longest to start (tens of seconds on a busy machine): meanwhile,
        // PostgreSQL and the Docker daemon.
        let keystone = options.own_keystone.then(|| {
            let state = seeded.get("FRESCO_STATE").to_owned();
            std::thread::spawn(move || Keystone::start(state))
        });
        let pg = Postgres::start(&dir);
        eprintln!("fault suite: own PostgreSQL after {:?}", started.elapsed());
        let docker = Dockerd::start(&dir);
        let keystone = match keystone {
            Some(starting) => starting.join().expect("Keystone started"),
            None => Keystone::shared(&seeded),
        };
        eprintln!("fault suite: Keystone after {:?}", started.elapsed());

        // What a deployment provisions (as the deploy tools do): the scheduler's ticket key,
        // the API's control-plane key, and one key per agent, enrolled with its id and URL.
        let (signing, verify) = key_pair(&dir, "ticket-signing");
        let (control_plane, control_plane_verify) = key_pair(&dir, "control-plane");
        let agents_dir = dir.join("agents");
        std::fs::create_dir_all(&agents_dir).unwrap();
        let api_port = free_port();
        let scheduler_ports: Vec<u16> = (0..options.schedulers).map(|_| free_port()).collect();
        let scheduler_urls = scheduler_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let common = format!(
            "[DEFAULT]\nauth_strategy = keystone\nstate_path = {dir}\n\n\
             [database]\nconnection = {db}\nmax_pool_size = 16\nconnection_timeout = 5\n\n\
             [keystone_authtoken]\nauth_url = {keystone}\nusername = {user}\npassword = {password}\n\
             user_domain_name = Default\nproject_name = {project}\nproject_domain_name = Default\n\
             token_cache_time = 600\nhttp_request_timeout = 5\n\n\
             [oslo_policy]\npolicy_file = {dir}/policy.yaml\n\n\
             [internal_auth]\nticket_verify_key_file = {verify}\nagent_keys_dir = {agents}\nticket_ttl = 5\n\n\
             [scheduler]\nurls = {scheduler_urls}\nagent_down_time = {down}\nlease_grace = 3\n\
             async_max_in_flight = {in_flight}\n",
            dir = dir.display(),
            db = pg.url,
            keystone = keystone.url(),
            user = seeded.get("FRESCO_SERVICE_USER"),
            password = seeded.get("FRESCO_SERVICE_PASSWORD"),
            project = seeded.get("FRESCO_SERVICE_PROJECT"),
            verify = verify.display(),
            agents = agents_dir.display(),
            down = options.agent_down_time,
            in_flight = options.async_max_in_flight,
        );
        let api_config = dir.join("api.conf");
        std::fs::write(
            &api_config,
            // The API holds the control-plane key, never the ticket key.
            format!(
                "{common}\n[internal_auth]\ncontrol_plane_key_file = {}\n\n[api]\nbind_port = {api_port}\n",
                control_plane.display()
            ),
        )
        .unwrap();
        run(Command::new(bin.join("fresco-api"))
            .arg("--config-file")
            .arg(&api_config)
            .arg("--db-sync"));
        let api = Proc::spawn("api", bin.join("fresco-api"), api_config, &dir, api_port);
        eprintln!("fault suite: api after {:?}", started.elapsed());
        let schedulers = scheduler_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let config = dir.join(format!("scheduler-{i}.conf"));
                // The scheduler holds the ticket key and the control-plane key's public half.
                std::fs::write(
                    &config,
                    format!(
                        "{common}bind_port = {port}\n\n[internal_auth]\nticket_signing_key_file = {}\n\
                         control_plane_verify_key_file = {}\n",
                        signing.display(),
                        control_plane_verify.display()
                    ),
                )
                .unwrap();
                Proc::spawn(
                    &format!("scheduler-{i}"),
                    bin.join("fresco-scheduler"),
                    config,
                    &dir,
                    *port,
                )
            })
            .collect();
        let agents = (0..options.agents)
            .map(|i| {
                let port = free_port();
                let state = dir.join(format!("a{i}"));
                std::fs::create_dir_all(&state).unwrap();
                // The agent's own key stays with it; its public half and URL are enrolled.
                let (key, public) = key_pair(&dir, &format!("agent-{i}"));
                std::fs::write(
                    agents_dir.join(format!("faults-{i}.pem")),
                    fresco_common::enrolment::render(
                        &format!("http://127.0.0.1:{port}"),
                        &std::fs::read_to_string(&public).unwrap(),
                    ),
                )
                .unwrap();
                let config = dir.join(format!("agent-{i}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "[DEFAULT]\nstate_path = {state}\n\n\
                         [internal_auth]\nticket_verify_key_file = {verify}\nagent_key_file = {key}\n\n\
                         [scheduler]\nurls = {scheduler_urls}\n\n\
                         [agent]\nagent_id = faults-{i}\nbind_port = {port}\napi_url = http://127.0.0.1:{api_port}\n\
                         docker_host = {docker}\nshim_path = {shim}\nheartbeat_interval = {beat}\n\
                         memory_mb = {memory}\nidle_timeout = 300\nlog_sync_timeout_ms = 200\n\
                         sandbox_uid_base = {uid_base}\nsandbox_uid_count = {AGENT_UIDS}\n",
                        uid_base = agent_uid_base(),
                        state = state.display(),
                        verify = verify.display(),
                        key = key.display(),
                        docker = docker.host,
                        memory = options.agent_memory_mb,
                        beat = options.heartbeat_interval,
                    ),
                )
                .unwrap();
                Proc::spawn(
                    &format!("agent-{i}"),
                    bin.join("fresco-agent"),
                    config,
                    &dir,
                    port,
                )
            })
            .collect();
        eprintln!("fault suite: agents after {:?}", started.elapsed());
        let member = keystone.token(&seeded, "FRESCO_TEST_A_MEMBER", "FRESCO_TEST_PROJECT_A");
        // Agents and runtimes are the cloud's: the admin role on the cloud admin project (a
        // project's own admin is not a cloud admin, issue 9).
        let admin = keystone.token(&seeded, "KEYSTONE_ADMIN", "KEYSTONE_ADMIN_PROJECT");
        let cluster = Cluster {
            dir,
            seeded,
            pg,
            docker,
            keystone,
            api,
            schedulers,
            agents,
            member,
            admin,
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        };
        cluster.wait_for_agents(options.agents);
        cluster.wait_for_active_scheduler(Duration::from_secs(30));
        eprintln!("fault suite: cluster up in {:?}", started.elapsed());
        cluster
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.url())
    }

    /// The index of the active scheduler, if one answers as active.
    pub fn active_scheduler(&self) -> Option<usize> {
        self.schedulers
            .iter()
            .position(|s| s.is_running() && s.health().is_some_and(|h| h["role"] == "active"))
    }

    pub fn wait_for_active_scheduler(&self, limit: Duration) -> usize {
        let mut active = None;
        wait_until(limit, "an active scheduler", || {
            active = self.active_scheduler();
            active.is_some()
        });
        active.unwrap()
    }

    /// Waits until `n` agents are up, as the admin API shows them.
    pub fn wait_for_agents(&self, n: usize) {
        wait_until(Duration::from_secs(60), &format!("{n} agents up"), || {
            self.http
                .get(self.url("/v1/agents"))
                .header("x-auth-token", &self.admin)
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .and_then(|v| {
                    v["agents"]
                        .as_array()
                        .map(|a| a.iter().filter(|x| x["state"] == "up").count())
                })
                .is_some_and(|up| up >= n)
        });
    }

    /// Registers the runtimes (as admin).
    pub fn register_runtimes(&self) {
        for (name, image, kind) in [
            ("python3", IMAGES[0], "python"),
            ("provided", IMAGES[1], "provided"),
        ] {
            let response = self
                .http
                .post(self.url("/v1/runtimes"))
                .header("x-auth-token", &self.admin)
                .json(&json!({"name": name, "image": image, "kind": kind}))
                .send()
                .unwrap();
            assert!(
                matches!(response.status().as_u16(), 201 | 409),
                "runtime {name}: {}",
                response.status()
            );
        }
    }

    /// Creates a function from a sample of tests/functions (as the member).
    pub fn create_function(&self, name: &str, sample: &str, settings: Value) {
        let package = zip_dir(&functions_dir().join(sample));
        let mut metadata = json!({"name": name, "runtime": "python3"});
        if let (Some(m), Some(s)) = (metadata.as_object_mut(), settings.as_object()) {
            m.extend(s.clone());
        }
        let form = function_form(&metadata, package);
        let response = self
            .http
            .post(self.url("/v1/functions"))
            .header("x-auth-token", &self.member)
            .multipart(form)
            .send()
            .unwrap();
        let status = response.status();
        assert_eq!(
            status.as_u16(),
            201,
            "{name}: {}",
            response.text().unwrap_or_default()
        );
    }

    /// Every run the agents report, as (execution id, how it ended), from their logs.
    pub fn runs(&self) -> Vec<(String, String)> {
        let mut runs = Vec::new();
        for agent in &self.agents {
            for line in agent.log_text().lines() {
                let Some(rest) = line.split(" execution ").nth(1) else {
                    continue;
                };
                let Some((id, tail)) = rest.split_once(": ") else {
                    continue;
                };
                if id.len() != 36 || !line.contains("DEBUG fresco_agent::service]") {
                    continue;
                }
                // "execution <id>: <status> in <ms> ms, ...", one per run that ended.
                let mut words = tail.split_whitespace();
                if let (Some(status), Some("in")) = (words.next(), words.next()) {
                    runs.push((id.to_owned(), status.to_owned()));
                }
            }
        }
        runs
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.kill9();
        }
        for scheduler in &mut self.schedulers {
            scheduler.signal_if_running("CONT");
            scheduler.kill9();
        }
        self.api.kill9();
        self.docker.shut_down();
        self.pg.stop();
        if self.keystone.running {
            self.keystone.stop();
        }
        if std::thread::panicking() {
            eprintln!(
                "fault suite state kept for inspection in {}",
                self.dir.display()
            );
        } else {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

impl Proc {
    fn signal_if_running(&self, name: &str) {
        if let Some(child) = &self.child {
            Command::new("kill")
                .arg(format!("-{name}"))
                .arg(child.id().to_string())
                .status()
                .ok();
        }
    }
}
