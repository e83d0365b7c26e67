//! fresco-shim: the entrypoint of every Fresco function container.
//!
//! 1. Serves nothing itself: the agent listens on 127.0.0.1:9001 (the AWS Lambda Runtime API
//!    address) inside the container's network namespace and the runtime talks to it directly.
//! 2. Waits until the agent says the sandbox is ready (`GET /2018-06-01/runtime/fresco/start`
//!    on the agent's per-container unix socket `/run/fresco/runtime.sock` answers 200 once the
//!    Runtime API listens and, for a function with network, its link is in place), so no
//!    function code runs in a half-prepared sandbox; any other answer ends the shim.
//!    A pre-warmed sandbox's `fresco/start` answers only when a function claims it, with
//!    that function's environment (`application/x-fresco-env`: `NAME=value` entries, each
//!    ended by a NUL), which the bootstrap gets on top of the container's own.
//!    Then starts the runtime's bootstrap with `AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001`:
//!    `/var/runtime/bootstrap` for managed runtimes, or the package's own `/var/task/bootstrap`
//!    when `FRESCO_RUNTIME=provided`. Nothing else from the environment chooses what runs.
//! 3. Before anything else, makes the agent's output FIFO (`/run/fresco/output`) its stdout
//!    and stderr, which the bootstrap and everything it starts inherit: the agent reads the
//!    function's output from there, not from the engine (see the agent's `logs`).
//! 4. As PID 1 it forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to the bootstrap,
//!    reaps orphaned processes, and exits with the bootstrap's status (128 + signal when a
//!    signal ended it).
//!
//! Standard library only, built static so it runs in any image (even `FROM scratch`).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::thread;

/// Where the agent serves the Runtime API, in the container's own network namespace.
const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";
const AGENT_SOCKET: &str = "/run/fresco/runtime.sock";
const OUTPUT_FIFO: &str = "/run/fresco/output";
const MANAGED_BOOTSTRAP: &str = "/var/runtime/bootstrap";
const PROVIDED_BOOTSTRAP: &str = "/var/task/bootstrap";
/// Exit status when the shim itself cannot do its job (EX_SOFTWARE).
const EXIT_SHIM_FAILED: i32 = 70;

fn main() {
    if let Err(e) = redirect_output(OUTPUT_FIFO) {
        fail(&format!("cannot open {OUTPUT_FIFO}: {e}"));
    }
    let forwarded = match sys::block_forwarded_signals() {
        Ok(set) => set,
        Err(e) => fail(&format!("cannot block signals: {e}")),
    };
    let claimed = match wait_until_ready(AGENT_SOCKET) {
        Ok(Some(env)) => env,
        Ok(None) => fail("the agent did not make the sandbox ready"),
        Err(e) => fail(&format!(
            "cannot ask the agent whether the sandbox is ready: {e}"
        )),
    };

    let runtime = claimed
        .iter()
        .find(|(name, _)| name == "FRESCO_RUNTIME")
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var("FRESCO_RUNTIME").ok());
    let bootstrap = bootstrap_path(runtime.as_deref());
    // std resets the signal mask in the child, so the bootstrap gets signals normally.
    let child = match Command::new(bootstrap)
        .envs(claimed)
        .env("AWS_LAMBDA_RUNTIME_API", RUNTIME_API_ADDR)
        .env_remove("FRESCO_RUNTIME")
        .spawn()
    {
        Ok(child) => child,
        Err(e) => fail(&format!("cannot start {bootstrap}: {e}")),
    };
    let Ok(child_pid) = i32::try_from(child.id()) else {
        fail("child pid out of range")
    };
    thread::spawn(move || loop {
        match sys::wait_signal(&forwarded) {
            Ok(signal) => sys::send_signal(child_pid, signal),
            Err(e) => fail(&format!("sigwait failed: {e}")),
        }
    });
    std::process::exit(reap_until(child_pid));
}

fn bootstrap_path(runtime: Option<&str>) -> &'static str {
    match runtime {
        Some("provided") => PROVIDED_BOOTSTRAP,
        _ => MANAGED_BOOTSTRAP,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("fresco-shim: {message}");
    std::process::exit(EXIT_SHIM_FAILED)
}

/// Reaps every child (PID 1 inherits orphans) until `child` ends; returns its exit status.
fn reap_until(child: i32) -> i32 {
    loop {
        match sys::wait_any() {
            Ok((pid, status)) if pid == child => return exit_code(status),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => fail(&format!("waitpid failed: {e}")),
        }
    }
}

/// The shell's convention: the exit code, or 128 + the signal that ended the process.
fn exit_code(status: i32) -> i32 {
    let signal = status & 0x7f;
    if signal == 0 {
        (status >> 8) & 0xff
    } else {
        128 + signal
    }
}

/// Largest answer to `fresco/start` read (a claimed function's environment).
const MAX_START_ANSWER: u64 = 1024 * 1024;

/// Asks the agent whether the sandbox is ready (a long poll): on `200`, the environment a
/// claimed pre-warmed sandbox's function gives its bootstrap (empty for any other sandbox);
/// `None` on any other answer.
fn wait_until_ready(agent_socket: &str) -> io::Result<Option<Vec<(String, String)>>> {
    let mut stream = UnixStream::connect(agent_socket)?;
    stream.write_all(
        b"GET /2018-06-01/runtime/fresco/start HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n",
    )?;
    let mut answer = Vec::new();
    stream.take(MAX_START_ANSWER).read_to_end(&mut answer)?;
    Ok(parse_start_answer(&answer))
}

/// The environment in an answer to `fresco/start` (see `wait_until_ready`).
fn parse_start_answer(answer: &[u8]) -> Option<Vec<(String, String)>> {
    if !answer.starts_with(b"HTTP/1.1 200 ") {
        return None;
    }
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (head, body) = (&answer[..split], &answer[split + 4..]);
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    if !head
        .lines()
        .any(|l| l.starts_with("content-type:") && l.contains("application/x-fresco-env"))
    {
        return Some(Vec::new());
    }
    let env = body
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (name, value) = text.split_once('=')?;
            (!name.is_empty()).then(|| (name.to_owned(), value.to_owned()))
        })
        .collect();
    Some(env)
}

/// Makes the FIFO at `path` this process's stdout and stderr (inherited by its children).
fn redirect_output(path: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Blocks until a reader has the FIFO open: the agent holds it from before the start.
    let fifo = std::fs::OpenOptions::new().write(true).open(path)?;
    sys::dup_onto(fifo.as_raw_fd(), 1)?;
    sys::dup_onto(fifo.as_raw_fd(), 2)
}

/// The few libc calls std does not offer: signal masks, sigwait, kill, waitpid and dup2. Kept to
/// plain calls on stack values so each one is evidently sound.
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::os::raw::c_int;

    /// glibc's `sigset_t` (1024 bits).
    #[repr(C)]
    pub struct SigSet([u64; 16]);

    const SIG_BLOCK: c_int = 0;
    const FORWARDED: [c_int; 6] = [
        1,  // SIGHUP
        2,  // SIGINT
        3,  // SIGQUIT
        10, // SIGUSR1
        12, // SIGUSR2
        15, // SIGTERM
    ];

    extern "C" {
        fn sigemptyset(set: *mut SigSet) -> c_int;
        fn sigaddset(set: *mut SigSet, signum: c_int) -> c_int;
        fn pthread_sigmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
        fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int;
        fn kill(pid: i32, sig: c_int) -> c_int;
        fn waitpid(pid: i32, status: *mut c_int, options: c_int) -> i32;
        fn dup2(old: c_int, new: c_int) -> c_int;
    }

    /// Makes `target` a copy of `fd` (without close-on-exec).
    pub fn dup_onto(fd: c_int, target: c_int) -> io::Result<()> {
        // SAFETY: dup2 takes plain integers; an invalid fd is reported as an error.
        if unsafe { dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Blocks the forwarded signals in this thread (and the threads it starts later), so that
    /// only `wait_signal` receives them.
    pub fn block_forwarded_signals() -> io::Result<SigSet> {
        let mut set = SigSet([0; 16]);
        // SAFETY: `set` is a valid, writable sigset_t-sized buffer for the duration of the calls.
        unsafe {
            if sigemptyset(&mut set) != 0 {
                return Err(io::Error::last_os_error());
            }
            for signal in FORWARDED {
                if sigaddset(&mut set, signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let rc = pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
        }
        Ok(set)
    }

    /// Waits for one of the blocked signals.
    pub fn wait_signal(set: &SigSet) -> io::Result<c_int> {
        let mut signal: c_int = 0;
        // SAFETY: `set` is an initialised sigset_t and `signal` a valid out-pointer.
        let rc = unsafe { sigwait(set, &mut signal) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(signal)
    }

    /// Sends `signal` to `pid`; a process already gone is not an error worth reporting.
    pub fn send_signal(pid: i32, signal: c_int) {
        if pid > 0 {
            // SAFETY: kill takes plain integers; pid > 0 never addresses a process group.
            unsafe {
                kill(pid, signal);
            }
        }
    }

    /// Waits for any child to end: `(pid, raw status)`.
    pub fn wait_any() -> io::Result<(i32, i32)> {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid out-pointer; options 0 blocks until a child ends.
        let pid = unsafe { waitpid(-1, &mut status, 0) };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((pid, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137, "killed by SIGKILL");
        assert_eq!(exit_code(15), 143, "killed by SIGTERM");
    }

    #[test]
    fn a_claimed_sandbox_gets_its_function_environment() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-fresco-env\r\ncontent-length: 30\r\n\r\nA=1\0_HANDLER=m.h\0EMPTY=\0NOEQ\0";
        assert_eq!(
            parse_start_answer(answer),
            Some(vec![
                ("A".to_owned(), "1".to_owned()),
                ("_HANDLER".to_owned(), "m.h".to_owned()),
                ("EMPTY".to_owned(), String::new()),
            ])
        );
        let ready =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\":\"ready\"}";
        assert_eq!(parse_start_answer(ready), Some(Vec::new()));
        assert_eq!(parse_start_answer(b"HTTP/1.1 410 Gone\r\n\r\n"), None);
    }

    #[test]
    fn only_provided_selects_the_package_bootstrap() {
        assert_eq!(bootstrap_path(Some("provided")), PROVIDED_BOOTSTRAP);
        assert_eq!(bootstrap_path(None), MANAGED_BOOTSTRAP);
        assert_eq!(bootstrap_path(Some("python")), MANAGED_BOOTSTRAP);
        assert_eq!(bootstrap_path(Some("/bin/evil")), MANAGED_BOOTSTRAP);
    }
}
