//! The HTTP edge (actix-web). Handlers parse the request, check policy, call the domain in a
//! blocking-pool thread (diesel is synchronous), and render. Nothing below this module knows
//! about HTTP.

pub mod auth;
pub mod body;
pub mod error;
mod handlers;
pub mod paging;
pub mod views;

/// Every route the app serves (path pattern, methods), from the same table `app` is built from;
/// `docs/openapi.yaml` must document exactly these (api/tests/rest/openapi.rs checks it).
pub use handlers::{Route, ROUTES};

use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpMessage};
use fresco_auth::policy::Enforcer;
use fresco_auth::Authenticator;
use fresco_common::conf::{ApiSection, QuotaSection};
use fresco_common::enrolment::AgentRegistry;
use fresco_common::ticket::TicketVerifier;
use futures_util::future::LocalBoxFuture;

use crate::domain::functions::PackageLimits;
use crate::domain::DomainResult;
use error::{ApiError, ApiResult};
use fresco_store::{PgConnection, PgPool};

/// Everything a request handler may use, shared by all workers.
pub struct AppState {
    pub pool: PgPool,
    pub api: ApiSection,
    pub quota: QuotaSection,
    pub auth: Authenticator,
    pub policy: Enforcer,
    /// Checks the tickets agents present when they download code.
    pub tickets: Option<TicketVerifier>,
    /// The enrolled agents' public keys, which check their code-download tokens.
    pub agents: AgentRegistry,
    /// Base URL for links (`[api] public_url`).
    pub base_url: String,
    /// Age of the last heartbeat after which an agent shows as down.
    pub agent_down_after: chrono::Duration,
    /// The invocation path; `None` when the control-plane key is missing.
    pub invoker: Option<crate::invoke::Invoker>,
    /// `GET /metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Copies of invocations for aliases' shadow versions; `None` without invocations.
    pub shadows: Option<crate::shadow::ShadowQueue>,
}

impl AppState {
    /// Forgets this replica's cached invocation targets of a function that changed.
    pub fn forget_targets(&self, function_id: uuid::Uuid) {
        if let Some(invoker) = &self.invoker {
            invoker.cache.forget_function(function_id);
            invoker.hooks.forget_function(function_id);
        }
    }

    /// Forgets every cached invocation target of this replica (a runtime changed).
    pub fn forget_all_targets(&self) {
        if let Some(invoker) = &self.invoker {
            invoker.cache.clear();
            invoker.hooks.clear();
        }
    }

    /// Runs a domain operation with a pooled connection on the blocking thread pool.
    pub async fn db<T, F>(self: &Arc<Self>, op: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> DomainResult<T> + Send + 'static,
    {
        Ok(crate::command::db(&self.pool, op).await?)
    }

    pub fn package_limits(&self) -> PackageLimits {
        PackageLimits {
            max_package_bytes: self.api.max_package_bytes,
            max_unpacked_bytes: self.api.max_unpacked_bytes,
            max_entries: self.api.max_archive_entries,
        }
    }
}

/// The request id of the current request, as put in its extensions by the middleware.
#[derive(Clone)]
pub struct RequestId(pub String);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-openstack-request-id");

/// Builds the application: routes, request ids, error rendering.
pub fn app(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_web::App::new()
        .app_data(state)
        // The query extractor is not used; lists parse their own strict query (paging::Query).
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _| ApiError::not_found(format!("invalid path: {err}")).into()),
        )
        .wrap_fn(|req, srv| {
            let id = format!("req-{}", uuid::Uuid::new_v4());
            req.extensions_mut().insert(RequestId(id.clone()));
            let method = req.method().clone();
            let path = req.path().to_owned();
            // A path holding U+0000 names nothing that can exist (PostgreSQL text cannot
            // store it): not found, before any handler reads it.
            let response: LocalBoxFuture<'static, _> = if path.contains("%00") {
                let fault = actix_web::ResponseError::error_response(&ApiError::not_found(
                    "no such resource: the path contains a NUL character",
                ));
                Box::pin(futures_util::future::ready(Ok(req.into_response(fault))))
            } else {
                let called = srv.call(req);
                Box::pin(async move { called.await.map(|r| r.map_into_boxed_body()) })
            };
            async move {
                let mut response = response.await?;
                if response.status() == actix_web::http::StatusCode::METHOD_NOT_ALLOWED {
                    let allow = response
                        .headers()
                        .get(actix_web::http::header::ALLOW)
                        .cloned();
                    let (request, _) = response.into_parts();
                    let mut fault = actix_web::ResponseError::error_response(&ApiError::new(
                        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                        format!("method {method} is not allowed on {path}"),
                    ));
                    if let Some(allow) = allow {
                        fault
                            .headers_mut()
                            .insert(actix_web::http::header::ALLOW, allow);
                    }
                    response = actix_web::dev::ServiceResponse::new(request, fault);
                }
                if let Ok(value) = HeaderValue::from_str(&id) {
                    response.headers_mut().insert(REQUEST_ID.clone(), value);
                }
                log::debug!("{id} {method} {path} {}", response.status().as_u16());
                Ok(response)
            }
        })
        .configure(handlers::routes)
        .default_service(web::to(|| async {
            Err::<actix_web::HttpResponse, _>(ApiError::not_found("no such resource"))
        }))
}
