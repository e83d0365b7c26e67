//! Signed tokens between Fresco's own services (jsonwebtoken, EdDSA only). Every token names
//! its type in the `typ` claim and every verifier checks it, so no token is ever accepted in
//! another's place, and each type is signed with a different key:
//!
//! | type            | signed by, with                        | checked by                     | lets its bearer
//! |-----------------|----------------------------------------|--------------------------------|-----------------
//! | `execution`     | fresco-scheduler, the ticket key       | the agent it names (`aud`); fresco-api for code downloads | run one execution, once, with the payload whose sha256 it carries
//! | `grant`         | fresco-scheduler, the ticket key       | the agent it names (`aud`)     | run its function on that agent, with any event, at most `slots` at once, each execution id once, until `exp`
//! | `control-plane` | fresco-api, the control-plane key      | fresco-scheduler               | ask for placements, release leases, report agents unreachable
//! | `heartbeat`     | an agent, its own key                  | fresco-scheduler, with the key enrolled for that agent | report that agent's capacity, at its enrolled URL, with the body whose sha256 it carries
//! | `code-download` | an agent, its own key                  | fresco-api, with the enrolled key | download the one package named by an execution ticket for that agent
//!
//! Only the scheduler holds the ticket key's private half; agents and the API hold its public
//! half. Only the API holds the control-plane key. Each agent holds its own key only; the
//! control plane holds the agents' public keys (see [`crate::enrolment`]), never a secret of
//! theirs. A compromised agent can therefore sign nothing but its own heartbeats and
//! downloads, and a ticket can never pass as any other token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::wire::FunctionSpec;

/// `iss` of execution tickets.
const ISSUER: &str = "fresco-scheduler";
/// `aud` of the tokens the scheduler checks (control-plane and heartbeat tokens).
const SCHEDULER_AUDIENCE: &str = "fresco-scheduler";
/// `aud` of the tokens the API checks (code downloads).
const API_AUDIENCE: &str = "fresco-api";
/// Seconds of clock skew tolerated on `exp`.
pub const LEEWAY_S: u64 = 5;
/// Longest an agent token (heartbeat, code download) may live, in seconds.
pub const MAX_AGENT_TOKEN_TTL_S: i64 = 300;
/// Longest an agent id may be.
pub const MAX_AGENT_ID_LEN: usize = 128;

/// Names of Fresco's own services: no agent may carry one, so a token naming a service can
/// never be read as one naming an agent (or the reverse).
pub const RESERVED_NAMES: &[&str] = &[
    "fresco",
    "fresco-api",
    "fresco-scheduler",
    "fresco-agent",
    "fresco-control-plane",
];

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("a {got} token is not a {expected} token")]
    WrongType { expected: TokenType, got: TokenType },
    #[error("the token {0}")]
    Mismatch(String),
    #[error("{0:?} is reserved for a fresco service and cannot name an agent")]
    ReservedName(String),
    #[error("agent id {0:?} must be 1 to 128 of letters, digits, '.', '_' and '-', not starting with '.'")]
    InvalidAgentId(String),
    #[error("ticket already used")]
    Replayed,
    #[error("the token lives {0} s, longer than allowed")]
    TooLong(i64),
}

/// What a token is for; the `typ` claim of every internal token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenType {
    Execution,
    ControlPlane,
    Heartbeat,
    CodeDownload,
    Grant,
}

impl std::fmt::Display for TokenType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenType::Execution => "execution",
            TokenType::ControlPlane => "control-plane",
            TokenType::Heartbeat => "heartbeat",
            TokenType::CodeDownload => "code-download",
            TokenType::Grant => "grant",
        })
    }
}

/// Whether `id` may name an agent: a safe file name (the control plane keeps one enrolment
/// file per agent) and none of [`RESERVED_NAMES`].
pub fn check_agent_id(id: &str) -> Result<(), TicketError> {
    if id.is_empty()
        || id.len() > MAX_AGENT_ID_LEN
        || id.starts_with('.')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(TicketError::InvalidAgentId(id.to_owned()));
    }
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(id)) {
        return Err(TicketError::ReservedName(id.to_owned()));
    }
    Ok(())
}

/// The sha256 of `bytes`, lowercase hex: how tickets and heartbeat tokens name a body.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn read_key(path: &str) -> Result<Vec<u8>, TicketError> {
    std::fs::read(path).map_err(|source| TicketError::KeyFile {
        path: path.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(claims: &T, key: &EncodingKey) -> Result<String, TicketError> {
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, key).map_err(TicketError::Key)
}

/// Decodes a token of type `typ`: signature, expiry and the audience (when given) checked by
/// jsonwebtoken, the type here.
fn decode<T: DeserializeOwned + Typed>(
    token: &str,
    key: &DecodingKey,
    audience: Option<&str>,
    typ: TokenType,
) -> Result<T, TicketError> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = LEEWAY_S;
    validation.set_required_spec_claims(&["exp", "iat", "aud", "sub"]);
    match audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let claims = jsonwebtoken::decode::<T>(token, key, &validation)
        .map_err(TicketError::Invalid)?
        .claims;
    if claims.typ() != typ {
        return Err(TicketError::WrongType {
            expected: typ,
            got: claims.typ(),
        });
    }
    Ok(claims)
}

trait Typed {
    fn typ(&self) -> TokenType;
}

// --- Execution tickets ------------------------------------------------------------------------

/// The claims of an execution ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketClaims {
    pub typ: TokenType,
    pub iss: String,
    /// The agent the ticket is for.
    pub aud: String,
    /// The execution id.
    pub sub: Uuid,
    /// The ticket's own id: an agent accepts each ticket once.
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// The scheduler's lease, released when the run ends.
    pub lease_id: Uuid,
    /// sha256 (hex) of the event the execution runs with: the ticket is for that payload only.
    pub payload_sha256: String,
    pub spec: FunctionSpec,
}

impl Typed for TicketClaims {
    fn typ(&self) -> TokenType {
        self.typ
    }
}

/// Signs execution tickets (fresco-scheduler only).
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

    /// A ticket for `agent_id` to run `execution_id` once, with the payload whose sha256 is
    /// `payload_sha256` ([`sha256_hex`]). A reserved service name is refused.
    pub fn sign(
        &self,
        agent_id: &str,
        execution_id: Uuid,
        lease_id: Uuid,
        payload_sha256: &str,
        spec: FunctionSpec,
    ) -> Result<String, TicketError> {
        check_agent_id(agent_id)?;
        let now = now();
        let claims = TicketClaims {
            typ: TokenType::Execution,
            iss: ISSUER.to_owned(),
            aud: agent_id.to_owned(),
            sub: execution_id,
            jti: Uuid::new_v4(),
            iat: now,
            exp: now + self.ttl_s,
            lease_id,
            payload_sha256: payload_sha256.to_owned(),
            spec,
        };
        encode(&claims, &self.key)
    }
}

/// Verifies execution tickets (agents; the API for code downloads).
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

    /// Checks signature, expiry, type and issuer; `agent_id` is the expected audience, or
    /// `None` to accept a ticket for any agent (the API checks code downloads this way, then
    /// holds the agent to the ticket's `aud`). Binding to a payload and single use are the
    /// agent's checks.
    pub fn verify(&self, token: &str, agent_id: Option<&str>) -> Result<TicketClaims, TicketError> {
        let claims: TicketClaims = decode(token, &self.key, agent_id, TokenType::Execution)?;
        if claims.iss != ISSUER {
            return Err(TicketError::Mismatch(format!(
                "was issued by {:?}",
                claims.iss
            )));
        }
        check_agent_id(&claims.aud)?;
        Ok(claims)
    }
}

// --- Grants ----------------------------------------------------------------------------------

/// The claims of a grant: the right to run one function on one agent, with any event, at most
/// `slots` invocations at once, each execution id once, until `exp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantClaims {
    pub typ: TokenType,
    pub iss: String,
    /// The agent the grant is for.
    pub aud: String,
    /// The grant's id (the scheduler counts its slots against the project until it returns).
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// Most invocations running at once under the grant.
    pub slots: u32,
    /// What runs; its `project_id` is the project the grant counts against.
    pub spec: FunctionSpec,
}

impl Typed for GrantClaims {
    fn typ(&self) -> TokenType {
        self.typ
    }
}

impl TicketSigner {
    /// A grant `grant_id` for `agent_id` to run `spec` at most `slots` at once for `ttl_s`
    /// seconds. A reserved service name is refused.
    pub fn sign_grant(
        &self,
        agent_id: &str,
        grant_id: Uuid,
        slots: u32,
        ttl_s: i64,
        spec: FunctionSpec,
    ) -> Result<String, TicketError> {
        check_agent_id(agent_id)?;
        let now = now();
        let claims = GrantClaims {
            typ: TokenType::Grant,
            iss: ISSUER.to_owned(),
            aud: agent_id.to_owned(),
            sub: grant_id,
            iat: now,
            exp: now + ttl_s,
            slots,
            spec,
        };
        encode(&claims, &self.key)
    }
}

impl TicketVerifier {
    /// Checks a grant's signature, expiry, type, issuer and that it is for `agent_id`.
    /// Slots and single use of execution ids are the agent's checks.
    pub fn verify_grant(&self, token: &str, agent_id: &str) -> Result<GrantClaims, TicketError> {
        self.verify_grant_for(token, Some(agent_id))
    }

    /// Checks a grant as [`TicketVerifier::verify_grant`] does, for any agent (the API checks
    /// code downloads this way, then holds the agent to the grant's `aud`).
    pub fn verify_grant_for(
        &self,
        token: &str,
        agent_id: Option<&str>,
    ) -> Result<GrantClaims, TicketError> {
        let claims: GrantClaims = decode(token, &self.key, agent_id, TokenType::Grant)?;
        if claims.iss != ISSUER {
            return Err(TicketError::Mismatch(format!(
                "was issued by {:?}",
                claims.iss
            )));
        }
        if claims.slots == 0 {
            return Err(TicketError::Mismatch("grants no slot".into()));
        }
        check_agent_id(&claims.aud)?;
        Ok(claims)
    }
}

// --- Control-plane tokens ---------------------------------------------------------------------

/// The claims of a control-plane token (fresco-api calling fresco-scheduler).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlPlaneClaims {
    pub typ: TokenType,
    pub iss: String,
    pub aud: String,
    /// The calling service, e.g. `fresco-api`.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
}

impl Typed for ControlPlaneClaims {
    fn typ(&self) -> TokenType {
        self.typ
    }
}

/// Signs control-plane tokens with the control-plane key (fresco-api only).
pub struct ControlPlaneSigner {
    key: EncodingKey,
    service: String,
}

impl ControlPlaneSigner {
    /// `service` names the caller; it must be one of [`RESERVED_NAMES`] (no agent can carry it).
    pub fn from_pem(pem: &[u8], service: &str) -> Result<Self, TicketError> {
        if !RESERVED_NAMES.contains(&service) {
            return Err(TicketError::Mismatch(format!(
                "names {service:?}, which is no fresco service"
            )));
        }
        Ok(Self {
            key: EncodingKey::from_ed_pem(pem).map_err(TicketError::Key)?,
            service: service.to_owned(),
        })
    }

    pub fn from_file(path: &str, service: &str) -> Result<Self, TicketError> {
        Self::from_pem(&read_key(path)?, service)
    }

    /// A token for calling the scheduler, valid for `ttl_s` seconds.
    pub fn token(&self, ttl_s: i64) -> Result<String, TicketError> {
        let now = now();
        encode(
            &ControlPlaneClaims {
                typ: TokenType::ControlPlane,
                iss: self.service.clone(),
                aud: SCHEDULER_AUDIENCE.to_owned(),
                sub: self.service.clone(),
                iat: now,
                exp: now + ttl_s,
            },
            &self.key,
        )
    }
}

/// Checks control-plane tokens with the control-plane key's public half (fresco-scheduler).
pub struct ControlPlaneVerifier {
    key: DecodingKey,
}

impl ControlPlaneVerifier {
    pub fn from_pem(pem: &[u8]) -> Result<Self, TicketError> {
        Ok(Self {
            key: DecodingKey::from_ed_pem(pem).map_err(TicketError::Key)?,
        })
    }

    pub fn from_file(path: &str) -> Result<Self, TicketError> {
        Self::from_pem(&read_key(path)?)
    }

    /// Returns the calling service's name.
    pub fn verify(&self, token: &str) -> Result<String, TicketError> {
        let claims: ControlPlaneClaims = decode(
            token,
            &self.key,
            Some(SCHEDULER_AUDIENCE),
            TokenType::ControlPlane,
        )?;
        if !RESERVED_NAMES.contains(&claims.sub.as_str()) || claims.iss != claims.sub {
            return Err(TicketError::Mismatch(format!(
                "names {:?}, which is no fresco service",
                claims.sub
            )));
        }
        Ok(claims.sub)
    }
}

// --- Agent tokens -----------------------------------------------------------------------------

/// The claims of an agent's heartbeat token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatClaims {
    pub typ: TokenType,
    pub iss: String,
    pub aud: String,
    /// The agent id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// sha256 (hex) of the heartbeat body the token was signed for.
    pub body_sha256: String,
}

impl Typed for HeartbeatClaims {
    fn typ(&self) -> TokenType {
        self.typ
    }
}

/// The claims of an agent's code-download token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeDownloadClaims {
    pub typ: TokenType,
    pub iss: String,
    pub aud: String,
    /// The agent id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The package (sha256, hex) to download.
    pub sha256: String,
    /// The `jti` of the execution ticket that names the package.
    pub ticket_id: Uuid,
}

impl Typed for CodeDownloadClaims {
    fn typ(&self) -> TokenType {
        self.typ
    }
}

/// An agent's own credential: its Ed25519 private key (fresco-agent only).
pub struct AgentSigner {
    key: EncodingKey,
    agent_id: String,
}

impl AgentSigner {
    pub fn from_pem(pem: &[u8], agent_id: &str) -> Result<Self, TicketError> {
        check_agent_id(agent_id)?;
        Ok(Self {
            key: EncodingKey::from_ed_pem(pem).map_err(TicketError::Key)?,
            agent_id: agent_id.to_owned(),
        })
    }

    pub fn from_file(path: &str, agent_id: &str) -> Result<Self, TicketError> {
        Self::from_pem(&read_key(path)?, agent_id)
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// A token for one heartbeat, `body` being its exact JSON bytes.
    pub fn heartbeat_token(&self, body: &[u8], ttl_s: i64) -> Result<String, TicketError> {
        let now = now();
        encode(
            &HeartbeatClaims {
                typ: TokenType::Heartbeat,
                iss: self.agent_id.clone(),
                aud: SCHEDULER_AUDIENCE.to_owned(),
                sub: self.agent_id.clone(),
                iat: now,
                exp: now + ttl_s.min(MAX_AGENT_TOKEN_TTL_S),
                body_sha256: sha256_hex(body),
            },
            &self.key,
        )
    }

    /// A token for downloading the package `sha256`, named by the ticket `ticket_id`.
    pub fn code_download_token(
        &self,
        sha256: &str,
        ticket_id: Uuid,
        ttl_s: i64,
    ) -> Result<String, TicketError> {
        let now = now();
        encode(
            &CodeDownloadClaims {
                typ: TokenType::CodeDownload,
                iss: self.agent_id.clone(),
                aud: API_AUDIENCE.to_owned(),
                sub: self.agent_id.clone(),
                iat: now,
                exp: now + ttl_s.min(MAX_AGENT_TOKEN_TTL_S),
                sha256: sha256.to_owned(),
                ticket_id,
            },
            &self.key,
        )
    }
}

/// One agent's enrolled public key: checks the tokens that agent signs (the control plane).
pub struct AgentVerifier {
    key: DecodingKey,
}

impl AgentVerifier {
    pub fn from_pem(pem: &[u8]) -> Result<Self, TicketError> {
        Ok(Self {
            key: DecodingKey::from_ed_pem(pem).map_err(TicketError::Key)?,
        })
    }

    fn check_agent(
        agent_id: &str,
        iss: &str,
        sub: &str,
        iat: i64,
        exp: i64,
    ) -> Result<(), TicketError> {
        if sub != agent_id || iss != agent_id {
            return Err(TicketError::Mismatch(format!(
                "was signed for agent {sub:?}, not {agent_id:?}"
            )));
        }
        if exp - iat > MAX_AGENT_TOKEN_TTL_S {
            return Err(TicketError::TooLong(exp - iat));
        }
        Ok(())
    }

    /// Checks a heartbeat token: signed with this key, for `agent_id`, for exactly `body`.
    pub fn verify_heartbeat(
        &self,
        agent_id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<(), TicketError> {
        let claims: HeartbeatClaims = decode(
            token,
            &self.key,
            Some(SCHEDULER_AUDIENCE),
            TokenType::Heartbeat,
        )?;
        Self::check_agent(agent_id, &claims.iss, &claims.sub, claims.iat, claims.exp)?;
        if claims.body_sha256 != sha256_hex(body) {
            return Err(TicketError::Mismatch(
                "was signed for another heartbeat body".into(),
            ));
        }
        Ok(())
    }

    /// Checks a code-download token: signed with this key, for `agent_id`, for the package
    /// `sha256` named by the ticket `ticket_id`.
    pub fn verify_code_download(
        &self,
        agent_id: &str,
        token: &str,
        sha256: &str,
        ticket_id: Uuid,
    ) -> Result<(), TicketError> {
        let claims: CodeDownloadClaims = decode(
            token,
            &self.key,
            Some(API_AUDIENCE),
            TokenType::CodeDownload,
        )?;
        Self::check_agent(agent_id, &claims.iss, &claims.sub, claims.iat, claims.exp)?;
        if claims.sha256 != sha256 || claims.ticket_id != ticket_id {
            return Err(TicketError::Mismatch(
                "was signed for another package or ticket".into(),
            ));
        }
        Ok(())
    }
}

/// Throwaway Ed25519 key pairs for tests only (`openssl genpkey -algorithm ed25519`); built
/// only with the `test-keys` feature, which only dev-dependencies turn on.
#[cfg(any(test, feature = "test-keys"))]
pub mod test_keys {
    /// The ticket key (the scheduler's).
    pub const TICKET_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPDphl9SqanFK+zTSluaX26jfvxzKtsDBf4ntwe+UDy7\n-----END PRIVATE KEY-----\n";
    pub const TICKET_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEALN3/XuOh0wrB4/jbsZwWdiMRVZL2PUepzf18DzEv6D4=\n-----END PUBLIC KEY-----\n";
    /// The control-plane key (the API's).
    pub const CONTROL_PLANE_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJkYewpnWC4j4itLIDrFcrqZlPa5m0alpJWXsAhWV0/I\n-----END PRIVATE KEY-----\n";
    pub const CONTROL_PLANE_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAZmmpoJKqKJ6+R/F0n4fvX57Obb/YAYh4a2VXJAjfgi0=\n-----END PUBLIC KEY-----\n";
    /// An agent's key.
    pub const AGENT_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIL6msE7JvCkoaU0cnVEu4Gfwr2R13hkYzHq/bcGt3hwp\n-----END PRIVATE KEY-----\n";
    pub const AGENT_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAGhmwbZBzWONdRV16NAKZBASFSN/KOs4/ObtLYWWENY=\n-----END PUBLIC KEY-----\n";
    /// Another agent's key.
    pub const OTHER_AGENT_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKWAPMfdDdwQyvYOWKc8MkS2rpUaAhqRKQuy3mmBpRY/\n-----END PRIVATE KEY-----\n";
    pub const OTHER_AGENT_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAW0ER0/iug2xuDte3o44gza8jWGZiUFBIUfuEUxdN/PA=\n-----END PUBLIC KEY-----\n";
}

#[cfg(test)]
mod tests;
