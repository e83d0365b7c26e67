//! Signed tokens between Fresco's own services (jsonwebtoken).
//!
//! - Execution tickets: the control plane signs them with an Ed25519 private key that agents
//!   never hold; an agent verifies with the public key, so a compromised agent cannot mint
//!   tickets for other agents. A ticket names its agent (`aud`), its execution (`sub`) and
//!   carries the whole `FunctionSpec`.
//! - Agent tokens: agents sign heartbeats and code downloads with the shared `agent_secret`
//!   (HS256), naming themselves in `sub`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::FunctionSpec;

const ISSUER: &str = "fresco";
const AGENT_AUDIENCE: &str = "fresco-control-plane";

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid key: {0}")]
    Key(jsonwebtoken::errors::Error),
    #[error("invalid token: {0}")]
    Invalid(jsonwebtoken::errors::Error),
    #[error("agent secret is empty: set [internal_auth] agent_secret")]
    EmptySecret,
}

/// The claims of an execution ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketClaims {
    pub iss: String,
    /// The agent the ticket is for.
    pub aud: String,
    /// The execution id.
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// The scheduler's lease, released when the run ends.
    pub lease_id: Uuid,
    pub spec: FunctionSpec,
}

/// Signs execution tickets (control plane only).
pub struct TicketSigner {
    key: EncodingKey,
    ttl_s: i64,
}

impl TicketSigner {
    pub fn from_pem(pem: &[u8], ttl_s: u64) -> Result<Self, TicketError> {
        Ok(Self {
            key: EncodingKey::from_ed_pem(pem).map_err(TicketError::Key)?,
            ttl_s: i64::try_from(ttl_s).unwrap_or(i64::MAX / 2),
        })
    }

    pub fn from_file(path: &str, ttl_s: u64) -> Result<Self, TicketError> {
        Self::from_pem(&read_key(path)?, ttl_s)
    }

    pub fn sign(
        &self,
        agent_id: &str,
        execution_id: Uuid,
        lease_id: Uuid,
        spec: FunctionSpec,
    ) -> Result<String, TicketError> {
        let now = chrono::Utc::now().timestamp();
        let claims = TicketClaims {
            iss: ISSUER.to_owned(),
            aud: agent_id.to_owned(),
            sub: execution_id,
            iat: now,
            exp: now + self.ttl_s,
            lease_id,
            spec,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key)
            .map_err(TicketError::Key)
    }
}

/// Verifies execution tickets (agents, and the API for code downloads).
pub struct TicketVerifier {
    key: DecodingKey,
}

impl TicketVerifier {
    pub fn from_pem(pem: &[u8]) -> Result<Self, TicketError> {
        Ok(Self {
            key: DecodingKey::from_ed_pem(pem).map_err(TicketError::Key)?,
        })
    }

    pub fn from_file(path: &str) -> Result<Self, TicketError> {
        Self::from_pem(&read_key(path)?)
    }

    /// Checks signature, expiry and issuer; `agent_id` is the expected audience, or `None` to
    /// accept a ticket for any agent (the API checks code downloads this way).
    pub fn verify(&self, token: &str, agent_id: Option<&str>) -> Result<TicketClaims, TicketError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        match agent_id {
            Some(agent) => validation.set_audience(&[agent]),
            None => validation.validate_aud = false,
        }
        jsonwebtoken::decode::<TicketClaims>(token, &self.key, &validation)
            .map(|data| data.claims)
            .map_err(TicketError::Invalid)
    }
}

/// The claims of a control-plane token (fresco-api calling fresco-scheduler). Signed with the
/// ticket key, which agents do not hold, so an agent cannot ask for placements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlPlaneClaims {
    pub iss: String,
    pub aud: String,
    /// The calling service, e.g. `fresco-api`.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
}

const CONTROL_PLANE_AUDIENCE: &str = "fresco-scheduler";

impl TicketSigner {
    /// A token for a control-plane service calling the scheduler, valid for `ttl_s` seconds.
    pub fn control_plane_token(&self, service: &str, ttl_s: i64) -> Result<String, TicketError> {
        let now = chrono::Utc::now().timestamp();
        let claims = ControlPlaneClaims {
            iss: ISSUER.to_owned(),
            aud: CONTROL_PLANE_AUDIENCE.to_owned(),
            sub: service.to_owned(),
            iat: now,
            exp: now + ttl_s,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key)
            .map_err(TicketError::Key)
    }
}

impl TicketVerifier {
    /// Checks a control-plane token; returns the calling service's name.
    pub fn verify_control_plane(&self, token: &str) -> Result<String, TicketError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[CONTROL_PLANE_AUDIENCE]);
        validation.leeway = 5;
        jsonwebtoken::decode::<ControlPlaneClaims>(token, &self.key, &validation)
            .map(|data| data.claims.sub)
            .map_err(TicketError::Invalid)
    }
}

/// The claims of an agent's own token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentClaims {
    pub iss: String,
    pub aud: String,
    /// The agent id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks agent tokens with the shared agent secret.
pub struct AgentTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl AgentTokens {
    pub fn new(secret: &str) -> Result<Self, TicketError> {
        if secret.is_empty() {
            return Err(TicketError::EmptySecret);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        })
    }

    /// A token for `agent_id`, valid for `ttl_s` seconds.
    pub fn sign(&self, agent_id: &str, ttl_s: i64) -> Result<String, TicketError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AgentClaims {
            iss: agent_id.to_owned(),
            aud: AGENT_AUDIENCE.to_owned(),
            sub: agent_id.to_owned(),
            iat: now,
            exp: now + ttl_s,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(TicketError::Key)
    }

    /// Returns the agent id the token was signed for.
    pub fn verify(&self, token: &str) -> Result<String, TicketError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AGENT_AUDIENCE]);
        validation.leeway = 5;
        jsonwebtoken::decode::<AgentClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims.sub)
            .map_err(TicketError::Invalid)
    }
}

fn read_key(path: &str) -> Result<Vec<u8>, TicketError> {
    std::fs::read(path).map_err(|source| TicketError::KeyFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway Ed25519 key pair for tests only (`openssl genpkey -algorithm ed25519`).
    const TEST_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPDphl9SqanFK+zTSluaX26jfvxzKtsDBf4ntwe+UDy7\n-----END PRIVATE KEY-----\n";
    const TEST_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEALN3/XuOh0wrB4/jbsZwWdiMRVZL2PUepzf18DzEv6D4=\n-----END PUBLIC KEY-----\n";

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
            code_sha256: None,
            network: false,
            revision: 0,
        }
    }

    #[test]
    fn ticket_round_trip_checks_audience() {
        let signer = TicketSigner::from_pem(TEST_PRIVATE.as_bytes(), 30).expect("signer");
        let verifier = TicketVerifier::from_pem(TEST_PUBLIC.as_bytes()).expect("verifier");
        let execution = Uuid::new_v4();
        let token = signer
            .sign("agent-1", execution, Uuid::new_v4(), spec())
            .expect("sign");
        let claims = verifier.verify(&token, Some("agent-1")).expect("valid");
        assert_eq!(claims.sub, execution);
        assert_eq!(claims.spec.handler, "main.handler");
        assert!(
            verifier.verify(&token, Some("agent-2")).is_err(),
            "wrong agent"
        );
        assert!(verifier.verify(&token, None).is_ok(), "any agent");
    }

    #[test]
    fn tampered_or_expired_tickets_are_refused() {
        let signer = TicketSigner::from_pem(TEST_PRIVATE.as_bytes(), 30).expect("signer");
        let verifier = TicketVerifier::from_pem(TEST_PUBLIC.as_bytes()).expect("verifier");
        let token = signer
            .sign("a", Uuid::new_v4(), Uuid::new_v4(), spec())
            .expect("sign");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1].insert(4, 'x');
        assert!(verifier.verify(&parts.join("."), Some("a")).is_err());

        // An expired ticket: signed with a negative lifetime beyond the leeway.
        let expired = TicketSigner {
            ttl_s: -60,
            ..signer
        };
        let token = expired
            .sign("a", Uuid::new_v4(), Uuid::new_v4(), spec())
            .expect("sign");
        assert!(verifier.verify(&token, Some("a")).is_err());
    }

    #[test]
    fn control_plane_tokens_are_not_tickets() {
        let signer = TicketSigner::from_pem(TEST_PRIVATE.as_bytes(), 30).expect("signer");
        let verifier = TicketVerifier::from_pem(TEST_PUBLIC.as_bytes()).expect("verifier");
        let token = signer.control_plane_token("fresco-api", 60).expect("sign");
        assert_eq!(
            verifier.verify_control_plane(&token).expect("valid"),
            "fresco-api"
        );
        assert!(verifier.verify(&token, None).is_err(), "not a ticket");
        let ticket = signer
            .sign("a", Uuid::new_v4(), Uuid::new_v4(), spec())
            .expect("sign");
        assert!(
            verifier.verify_control_plane(&ticket).is_err(),
            "a ticket is not a control-plane token"
        );
    }

    #[test]
    fn agent_tokens_need_the_same_secret() {
        let tokens = AgentTokens::new("s3cret").expect("tokens");
        let token = tokens.sign("agent-1", 60).expect("sign");
        assert_eq!(tokens.verify(&token).expect("valid"), "agent-1");
        let other = AgentTokens::new("other").expect("tokens");
        assert!(other.verify(&token).is_err());
        assert!(AgentTokens::new("").is_err());
    }
}
