use super::test_keys::*;
use super::*;

fn spec() -> FunctionSpec {
    FunctionSpec {
        project_id: "p1".into(),
        function_id: Uuid::new_v4(),
        function_name: "f".into(),
        version: 0,
        image: "fresco/python3:dev".into(),
        runtime_kind: "python".into(),
        handler: "main.handler".into(),
        memory_mb: 128,
        timeout_s: 3,
        environment: Default::default(),
        code_sha256: Some("ab".repeat(32)),
        network: false,
        revision: 0,
    }
}

fn signer() -> TicketSigner {
    TicketSigner::from_pem(TICKET_PRIVATE.as_bytes(), 30).expect("signer")
}

fn verifier() -> TicketVerifier {
    TicketVerifier::from_pem(TICKET_PUBLIC.as_bytes()).expect("verifier")
}

fn control_plane() -> (ControlPlaneSigner, ControlPlaneVerifier) {
    (
        ControlPlaneSigner::from_pem(CONTROL_PLANE_PRIVATE.as_bytes(), "fresco-api").expect("cp"),
        ControlPlaneVerifier::from_pem(CONTROL_PLANE_PUBLIC.as_bytes()).expect("cp verifier"),
    )
}

fn ticket(agent: &str) -> String {
    signer()
        .sign(
            agent,
            Uuid::new_v4(),
            Uuid::new_v4(),
            &sha256_hex(b"{}"),
            spec(),
        )
        .expect("sign")
}

#[test]
fn ticket_round_trip_names_agent_execution_payload_and_a_fresh_id() {
    let execution = Uuid::new_v4();
    let payload = sha256_hex(br#"{"a":1}"#);
    let token = signer()
        .sign("agent-1", execution, Uuid::new_v4(), &payload, spec())
        .expect("sign");
    let claims = verifier().verify(&token, Some("agent-1")).expect("valid");
    assert_eq!(claims.typ, TokenType::Execution);
    assert_eq!(claims.sub, execution);
    assert_eq!(claims.payload_sha256, payload);
    assert_eq!(claims.spec.handler, "main.handler");
    assert!(
        verifier().verify(&token, Some("agent-2")).is_err(),
        "wrong agent"
    );
    assert!(verifier().verify(&token, None).is_ok(), "any agent");
    let again = verifier().verify(&ticket("agent-1"), None).expect("valid");
    assert_ne!(again.jti, claims.jti, "every ticket has its own id");
}

#[test]
fn tampered_or_expired_tickets_are_refused() {
    let token = ticket("a");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1].insert(4, 'x');
    assert!(verifier().verify(&parts.join("."), Some("a")).is_err());

    let expired = TicketSigner {
        ttl_s: -60,
        ..signer()
    };
    let token = expired
        .sign("a", Uuid::new_v4(), Uuid::new_v4(), "", spec())
        .expect("sign");
    assert!(verifier().verify(&token, Some("a")).is_err());
}

#[test]
fn no_token_passes_as_another_type() {
    let (cp_signer, cp_verifier) = control_plane();
    let cp = cp_signer.token(60).expect("sign");
    assert_eq!(cp_verifier.verify(&cp).expect("valid"), "fresco-api");
    assert!(verifier().verify(&cp, None).is_err(), "not a ticket");

    // A ticket is refused as a control-plane token: another key, another type.
    assert!(cp_verifier.verify(&ticket("agent-1")).is_err());
    // Even a ticket signed with the control-plane key is refused for its type.
    let forged = TicketSigner::from_pem(CONTROL_PLANE_PRIVATE.as_bytes(), 30)
        .expect("signer")
        .sign("agent-1", Uuid::new_v4(), Uuid::new_v4(), "", spec())
        .expect("sign");
    match cp_verifier.verify(&forged) {
        Err(TicketError::Invalid(_) | TicketError::WrongType { .. }) => {}
        other => panic!("a ticket passed as a control-plane token: {other:?}"),
    }

    // Agent tokens are neither tickets nor control-plane tokens, nor each other.
    let agent = AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), "agent-1").expect("agent");
    let key = AgentVerifier::from_pem(AGENT_PUBLIC.as_bytes()).expect("key");
    let heartbeat = agent.heartbeat_token(b"{}", 60).expect("sign");
    let download = agent
        .code_download_token("ab", Uuid::nil(), 60)
        .expect("sign");
    assert!(key.verify_heartbeat("agent-1", &heartbeat, b"{}").is_ok());
    assert!(key
        .verify_code_download("agent-1", &download, "ab", Uuid::nil())
        .is_ok());
    assert!(key.verify_heartbeat("agent-1", &download, b"{}").is_err());
    assert!(key
        .verify_code_download("agent-1", &heartbeat, "ab", Uuid::nil())
        .is_err());
    assert!(cp_verifier.verify(&heartbeat).is_err());
    assert!(verifier().verify(&heartbeat, None).is_err());
}

#[test]
fn the_type_claim_is_checked_even_under_the_right_key_and_audience() {
    // A control-plane-shaped token signed with the ticket key but typed as a ticket.
    let now = chrono::Utc::now().timestamp();
    let claims = ControlPlaneClaims {
        typ: TokenType::Execution,
        iss: "fresco-api".into(),
        aud: "fresco-scheduler".into(),
        sub: "fresco-api".into(),
        iat: now,
        exp: now + 60,
    };
    let key = EncodingKey::from_ed_pem(CONTROL_PLANE_PRIVATE.as_bytes()).expect("key");
    let token = encode(&claims, &key).expect("sign");
    let (_, cp_verifier) = control_plane();
    assert!(matches!(
        cp_verifier.verify(&token),
        Err(TicketError::WrongType {
            expected: TokenType::ControlPlane,
            got: TokenType::Execution
        })
    ));
    // And a token without any type is refused.
    let untyped = serde_json::json!({"iss": "fresco-api", "aud": "fresco-scheduler",
        "sub": "fresco-api", "iat": now, "exp": now + 60});
    let token = encode(&untyped, &key).expect("sign");
    assert!(cp_verifier.verify(&token).is_err());
}

#[test]
fn service_names_are_reserved() {
    for name in RESERVED_NAMES {
        assert!(matches!(
            check_agent_id(name),
            Err(TicketError::ReservedName(_))
        ));
        assert!(
            signer()
                .sign(name, Uuid::new_v4(), Uuid::new_v4(), "", spec())
                .is_err(),
            "no ticket for {name}"
        );
        assert!(AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), name).is_err());
    }
    assert!(
        check_agent_id("FRESCO-SCHEDULER").is_err(),
        "case-insensitive"
    );
    for bad in ["", ".hidden", "..", "a/b", "a b", &"x".repeat(129)] {
        assert!(
            matches!(check_agent_id(bad), Err(TicketError::InvalidAgentId(_))),
            "{bad:?}"
        );
    }
    for good in ["node-1", "compute.example.org", "e2e_1", "fresco-compute-1"] {
        assert!(check_agent_id(good).is_ok(), "{good}");
    }
    assert!(ControlPlaneSigner::from_pem(CONTROL_PLANE_PRIVATE.as_bytes(), "agent-1").is_err());
}

#[test]
fn agent_tokens_bind_the_agent_the_body_and_the_package() {
    let agent = AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), "agent-1").expect("agent");
    let other = AgentSigner::from_pem(OTHER_AGENT_PRIVATE.as_bytes(), "agent-2").expect("agent");
    let key1 = AgentVerifier::from_pem(AGENT_PUBLIC.as_bytes()).expect("key");
    let key2 = AgentVerifier::from_pem(OTHER_AGENT_PUBLIC.as_bytes()).expect("key");
    let body = br#"{"agent_id":"agent-1"}"#;
    let token = agent.heartbeat_token(body, 60).expect("sign");
    assert!(key1.verify_heartbeat("agent-1", &token, body).is_ok());
    // Agent 1's key cannot speak for agent 2, whose enrolled key is another.
    assert!(key2.verify_heartbeat("agent-2", &token, body).is_err());
    assert!(key1.verify_heartbeat("agent-2", &token, body).is_err());
    assert!(key1.verify_heartbeat("agent-1", &token, b"{}").is_err());
    // Agent 2 signing with its own key while claiming agent 1.
    let claims = HeartbeatClaims {
        typ: TokenType::Heartbeat,
        iss: "agent-1".into(),
        aud: "fresco-scheduler".into(),
        sub: "agent-1".into(),
        iat: now(),
        exp: now() + 60,
        body_sha256: sha256_hex(body),
    };
    let forged = encode(&claims, &other.key).expect("sign");
    assert!(key1.verify_heartbeat("agent-1", &forged, body).is_err());

    let ticket_id = Uuid::new_v4();
    let download = agent
        .code_download_token("aa", ticket_id, 60)
        .expect("sign");
    assert!(key1
        .verify_code_download("agent-1", &download, "aa", ticket_id)
        .is_ok());
    assert!(key1
        .verify_code_download("agent-1", &download, "bb", ticket_id)
        .is_err());
    assert!(key1
        .verify_code_download("agent-1", &download, "aa", Uuid::new_v4())
        .is_err());
    assert!(key2
        .verify_code_download("agent-2", &download, "aa", ticket_id)
        .is_err());

    // A long-lived agent token is refused even when signed right.
    let long = HeartbeatClaims {
        exp: now() + 3600,
        ..claims
    };
    let token = encode(&long, &agent.key).expect("sign");
    assert!(matches!(
        key1.verify_heartbeat("agent-1", &token, body),
        Err(TicketError::TooLong(_))
    ));
}

#[test]
fn payload_hashes_are_hex_sha256() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn grants_are_for_one_agent_and_pass_as_no_other_token() {
    let grant_id = Uuid::new_v4();
    let grant = signer()
        .sign_grant("agent-1", grant_id, 3, 10, spec())
        .expect("sign");
    let claims = verifier().verify_grant(&grant, "agent-1").expect("valid");
    assert_eq!(claims.typ, TokenType::Grant);
    assert_eq!(claims.sub, grant_id);
    assert_eq!(claims.slots, 3);
    assert_eq!(claims.spec.project_id, "p1");
    assert!(
        verifier().verify_grant(&grant, "agent-2").is_err(),
        "wrong agent"
    );

    // A grant is neither a ticket nor a control-plane token, and a ticket is not a grant.
    assert!(verifier().verify(&grant, Some("agent-1")).is_err());
    assert!(verifier().verify(&grant, None).is_err());
    let (_, cp_verifier) = control_plane();
    assert!(cp_verifier.verify(&grant).is_err());
    assert!(verifier()
        .verify_grant(&ticket("agent-1"), "agent-1")
        .is_err());
    let (cp_signer, _) = control_plane();
    let cp = cp_signer.token(60).expect("sign");
    assert!(verifier().verify_grant(&cp, "agent-1").is_err());

    // The type claim decides even when every other claim of a grant is there.
    let now = chrono::Utc::now().timestamp();
    let typed_as_ticket = GrantClaims {
        typ: TokenType::Execution,
        ..claims.clone()
    };
    let key = EncodingKey::from_ed_pem(TICKET_PRIVATE.as_bytes()).expect("key");
    let token = encode(&typed_as_ticket, &key).expect("sign");
    assert!(matches!(
        verifier().verify_grant(&token, "agent-1"),
        Err(TicketError::WrongType {
            expected: TokenType::Grant,
            got: TokenType::Execution
        })
    ));

    // Expired, empty or tampered grants are refused.
    let expired = signer()
        .sign_grant("agent-1", grant_id, 3, -60, spec())
        .expect("sign");
    assert!(verifier().verify_grant(&expired, "agent-1").is_err());
    let empty = GrantClaims {
        slots: 0,
        exp: now + 60,
        ..claims
    };
    let token = encode(&empty, &key).expect("sign");
    assert!(verifier().verify_grant(&token, "agent-1").is_err());
    let mut parts: Vec<String> = grant.split('.').map(str::to_owned).collect();
    parts[1].insert(4, 'x');
    assert!(verifier()
        .verify_grant(&parts.join("."), "agent-1")
        .is_err());
}
