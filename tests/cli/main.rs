//! The command line of the three service binaries, driven from the outside: the built
//! `fresco-api`, `fresco-scheduler` and `fresco-agent` (FRESCO_BIN_DIR) run with `--version`,
//! `--help`, mistakes and layered configuration files. Every error is one line on stderr,
//! `NAME: error: ...`, never a backtrace (RUST_BACKTRACE=1 is set), with status 2 for a
//! command-line mistake and 1 for a failure after parsing.

#![allow(clippy::unwrap_used)] // a test: a failed set-up step should panic loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use diesel::{Connection, PgConnection, RunQueryDsl};

const BINARIES: [&str; 3] = ["fresco-api", "fresco-scheduler", "fresco-agent"];

fn binary(name: &str) -> PathBuf {
    let dir = std::env::var("FRESCO_BIN_DIR").unwrap_or_else(|_| {
        panic!("FRESCO_BIN_DIR is not set: run these tests through tools/test, which builds the binaries")
    });
    Path::new(&dir).join(name)
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The run failed with `status`, stdout empty, and stderr is exactly one line
/// `NAME: error: ...` containing `fragment`, without a backtrace.
fn assert_one_line_error(name: &str, args: &[&str], status: i32, fragment: &str) -> String {
    let out = run(name, args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let what = format!(
        "{name} {args:?}: status {:?}, stderr {stderr:?}",
        out.status
    );
    assert_eq!(out.status.code(), Some(status), "{what}");
    assert_eq!(stdout, "", "{what}");
    assert_eq!(stderr.lines().count(), 1, "{what}");
    assert!(stderr.ends_with('\n'), "{what}");
    assert!(stderr.starts_with(&format!("{name}: error: ")), "{what}");
    assert!(stderr.contains(fragment), "{what}: no {fragment:?}");
    for noise in ["backtrace", "panicked", "Error {", "Caused by", "Usage:"] {
        assert!(!stderr.contains(noise), "{what}: {noise:?}");
    }
    stderr
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fresco-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

#[test]
fn version_and_help_on_every_binary() {
    for name in BINARIES {
        let out = run(name, &["--version"]);
        assert_eq!(out.status.code(), Some(0), "{name} --version");
        assert_eq!(
            text(&out.stdout),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{name} --version"
        );
        assert_eq!(text(&out.stderr), "", "{name} --version");

        for help in ["--help", "-h"] {
            let out = run(name, &[help]);
            assert_eq!(out.status.code(), Some(0), "{name} {help}");
            let stdout = text(&out.stdout);
            for option in [
                "--config-file <PATH>",
                "--config-dir <DIR>",
                "--version",
                "--help",
            ] {
                assert!(
                    stdout.contains(option),
                    "{name} {help}: no {option}: {stdout}"
                );
            }
            assert!(stdout.contains(&format!("Usage: {name}")), "{stdout}");
        }
    }
    let help = text(&run("fresco-api", &["--help"]).stdout);
    for option in [
        "--db-sync",
        "--print-sample-config",
        "--print-default-policy",
    ] {
        assert!(
            help.contains(option),
            "fresco-api --help: no {option}: {help}"
        );
    }
}

#[test]
fn mistakes_are_one_line_with_status_2() {
    for name in BINARIES {
        assert_one_line_error(name, &["--bogus"], 2, "unexpected argument '--bogus' found");
        let typo = assert_one_line_error(
            name,
            &["--config_file", "x.conf"],
            2,
            "unexpected argument '--config_file' found",
        );
        assert!(typo.contains("'--config-file'"), "{typo}");
        assert_one_line_error(
            name,
            &["--config-file"],
            2,
            "a value is required for '--config-file <PATH>'",
        );
        assert_one_line_error(name, &["--config-file="], 2, "the path is empty");
        // The agent has subcommands (run-local, serve-local): a stray word is one it does not know.
        let stray = if name == "fresco-agent" {
            "unrecognized subcommand 'stray'"
        } else {
            "unexpected argument 'stray' found"
        };
        assert_one_line_error(name, &["stray"], 2, stray);
    }
    // Only the API has these flags, and they exclude each other.
    for name in ["fresco-scheduler", "fresco-agent"] {
        assert_one_line_error(name, &["--db-sync"], 2, "unexpected argument '--db-sync'");
    }
    assert_one_line_error(
        "fresco-api",
        &["--db-sync", "--print-sample-config"],
        2,
        "cannot be used with",
    );
}

#[test]
fn configuration_failures_are_one_line_with_status_1() {
    let dir = temp_dir();
    for name in BINARIES {
        assert_one_line_error(
            name,
            &["--config-file=/nonexistent/fresco.conf"],
            1,
            "cannot read config file /nonexistent/fresco.conf: No such file or directory",
        );
        assert_one_line_error(
            name,
            &["--config-dir", "/nonexistent/fresco.conf.d"],
            1,
            "cannot read config directory /nonexistent/fresco.conf.d",
        );
        let broken = write(&dir.join("broken.conf"), "[DEFAULT]\nno equals sign here\n");
        assert_one_line_error(
            name,
            &["--config-file", &broken],
            1,
            &format!("{broken}:2: expected 'key = value'"),
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--config-file` repeats in both spellings; a later file overrides an earlier one, and the
/// `--config-dir` files (sorted by name, only `*.conf`) come after all of them. Each layer
/// sets `[DEFAULT] debug` to a word that is no boolean, so the error names the one that won.
#[test]
fn later_configuration_files_override_earlier_ones() {
    let dir = temp_dir();
    let conf =
        |file: &str, word: &str| write(&dir.join(file), &format!("[DEFAULT]\ndebug = {word}\n"));
    let first = conf("first.conf", "first");
    let second = conf("second.conf", "second");
    std::fs::create_dir_all(dir.join("fresco.conf.d")).unwrap();
    conf("fresco.conf.d/20-late.conf", "dir-late");
    conf("fresco.conf.d/10-early.conf", "dir-early");
    conf("fresco.conf.d/30-ignored.conf.orig", "not-a-conf-file");
    let conf_dir = dir.join("fresco.conf.d").display().to_string();
    let got = |word: &str| format!("[DEFAULT] debug: expected true or false, got \"{word}\"");
    for name in BINARIES {
        assert_one_line_error(name, &["--config-file", &first], 1, &got("first"));
        assert_one_line_error(
            name,
            &["--config-file", &first, &format!("--config-file={second}")],
            1,
            &got("second"),
        );
        assert_one_line_error(
            name,
            &["--config-file", &second, "--config-file", &first],
            1,
            &got("first"),
        );
        assert_one_line_error(
            name,
            &["--config-dir", &conf_dir, "--config-file", &first],
            1,
            &got("dir-late"),
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The real use of layering: the packaged file names a database that does not exist, an
/// operator's file in the config directory the real one; `--db-sync` uses the latter.
#[test]
fn db_sync_reads_the_layered_configuration() {
    let admin_url = std::env::var("FRESCO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| panic!("FRESCO_TEST_DATABASE_URL is not set: run through tools/test"));
    let database = format!("fresco_cli_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(&admin_url).unwrap();
    diesel::sql_query(format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .unwrap();
    let url = format!("{}/{database}", admin_url.rsplit_once('/').unwrap().0);

    let dir = temp_dir();
    let packaged = write(
        &dir.join("fresco.conf"),
        "[database]\nconnection = postgresql://nobody:nothing@127.0.0.1:1/none\n",
    );
    std::fs::create_dir_all(dir.join("fresco.conf.d")).unwrap();
    write(
        &dir.join("fresco.conf.d/50-local.conf"),
        &format!("[database]\nconnection = {url}\n"),
    );
    let conf_dir = dir.join("fresco.conf.d").display().to_string();

    assert_one_line_error(
        "fresco-api",
        &["--config-file", &packaged, "--db-sync"],
        1,
        "cannot connect to the database",
    );
    let out = run(
        "fresco-api",
        &[
            "--config-file",
            &packaged,
            "--config-dir",
            &conf_dir,
            "--db-sync",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("applied migration"),
        "{}",
        text(&out.stdout)
    );

    diesel::sql_query(format!("DROP DATABASE {database} WITH (FORCE)"))
        .execute(&mut admin)
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// The printing flags need no configuration at all.
#[test]
fn api_printing_flags_need_no_configuration() {
    let sample = run(
        "fresco-api",
        &["--print-sample-config", "--config-file=/nonexistent"],
    );
    assert_eq!(sample.status.code(), Some(0));
    assert!(text(&sample.stdout).starts_with("# Fresco configuration sample."));
    let policy = run("fresco-api", &["--print-default-policy"]);
    assert_eq!(policy.status.code(), Some(0));
    assert!(text(&policy.stdout).contains("execution:list"));
}
