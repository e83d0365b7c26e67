//! What control-plane trust costs per operation (harness = false; prints numbers):
//!
//!   cargo bench -p fresco-agent --bench tokens
//!
//! - the scheduler signing a ticket (per placement or dispatch),
//! - the agent admitting one (signature, type, audience, payload sha256, replay cache), with a
//!   small and a large event,
//! - an agent signing a heartbeat and the scheduler checking it against the enrolled key.

use std::time::Instant;

use fresco_agent::tickets::TicketGate;
use fresco_common::ticket::test_keys::{
    AGENT_PRIVATE, AGENT_PUBLIC, TICKET_PRIVATE, TICKET_PUBLIC,
};
use fresco_common::ticket::{sha256_hex, AgentSigner, AgentVerifier, TicketSigner, TicketVerifier};
use fresco_common::wire::FunctionSpec;
use uuid::Uuid;

const N: usize = 5000;

fn spec() -> FunctionSpec {
    FunctionSpec {
        project_id: "p".into(),
        function_id: Uuid::new_v4(),
        function_name: "bench".into(),
        version: 1,
        image: "fresco/python3:dev".into(),
        runtime_kind: "python".into(),
        handler: "main.handler".into(),
        memory_mb: 128,
        timeout_s: 3,
        environment: (0..8)
            .map(|i| (format!("VAR_{i}"), "x".repeat(32)))
            .collect(),
        code_sha256: Some("ab".repeat(32)),
        network: false,
        revision: 0,
    }
}

fn report(label: &str, started: Instant, n: usize) {
    let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{label:<58} {us:>9.1} µs/op  (n={n})");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("tokens benchmark: run it with `cargo bench -p fresco-agent --bench tokens`");
        return;
    }
    let signer = TicketSigner::from_pem(TICKET_PRIVATE.as_bytes(), 30).expect("signer");
    for (label, size) in [("1 KiB event", 1024), ("256 KiB event", 256 * 1024)] {
        let event = "x".repeat(size);
        let started = Instant::now();
        let tickets: Vec<String> = (0..N)
            .map(|_| {
                signer
                    .sign(
                        "bench-agent",
                        Uuid::new_v4(),
                        Uuid::new_v4(),
                        &sha256_hex(event.as_bytes()),
                        spec(),
                    )
                    .expect("sign")
            })
            .collect();
        report(
            &format!("scheduler: sha256 + sign a ticket ({label})"),
            started,
            N,
        );
        let gate = TicketGate::new(
            TicketVerifier::from_pem(TICKET_PUBLIC.as_bytes()).expect("verifier"),
            "bench-agent",
            30,
            1_000_000,
        );
        // The gate refuses tickets from before it started: wait for the next second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let fresh: Vec<String> = (0..N)
            .map(|_| {
                signer
                    .sign(
                        "bench-agent",
                        Uuid::new_v4(),
                        Uuid::new_v4(),
                        &sha256_hex(event.as_bytes()),
                        spec(),
                    )
                    .expect("sign")
            })
            .collect();
        drop(tickets);
        let started = Instant::now();
        for ticket in &fresh {
            gate.admit(ticket, event.as_bytes()).expect("admitted");
        }
        report(&format!("agent: admit a ticket ({label})"), started, N);
        let started = Instant::now();
        let verifier = TicketVerifier::from_pem(TICKET_PUBLIC.as_bytes()).expect("verifier");
        for ticket in &fresh {
            verifier.verify(ticket, Some("bench-agent")).expect("valid");
        }
        report(
            "agent: signature and claims only (no sha256, no cache)",
            started,
            N,
        );
    }
    let agent = AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), "bench-agent").expect("agent");
    let key = AgentVerifier::from_pem(AGENT_PUBLIC.as_bytes()).expect("key");
    let body = vec![b'x'; 2048];
    let started = Instant::now();
    let tokens: Vec<String> = (0..N)
        .map(|_| agent.heartbeat_token(&body, 60).expect("sign"))
        .collect();
    report("agent: sign a heartbeat (2 KiB body)", started, N);
    let started = Instant::now();
    for token in &tokens {
        key.verify_heartbeat("bench-agent", token, &body)
            .expect("valid");
    }
    report(
        "scheduler: check a heartbeat against the enrolled key",
        started,
        N,
    );
}
