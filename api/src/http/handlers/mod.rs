//! Route table and handlers, one module per resource. The table (`route_table!` below) is the
//! one list of served routes: the app is built from it and the OpenAPI drift test reads it.

mod agents;
mod aliases;
mod discovery;
mod events;
mod executions;
mod functions;
mod hooks;
mod internal;
mod invoke;
mod pipelines;
mod quotas;
mod runtimes;
mod triggers;
mod versions;
mod webhooks;

use std::sync::Arc;

use actix_web::web;

use super::AppState;

type State = web::Data<AppState>;

fn state(data: &State) -> Arc<AppState> {
    data.clone().into_inner()
}

/// Declares the route table once: `ROUTES` (what the app serves, for the OpenAPI drift test)
/// and `routes` (the actix configuration built from the very same entries).
macro_rules! route_table {
    ($($path:literal => { $($method:ident: $handler:path),+ $(,)? }),+ $(,)?) => {
        /// Every route the application serves: a path pattern and its methods (upper case).
        pub const ROUTES: &[Route] = &[
            $(Route { path: $path, methods: &[$(method_name!($method)),+] }),+
        ];

        pub fn routes(cfg: &mut web::ServiceConfig) {
            $(cfg.service(web::resource($path)$(.$method($handler))+);)+
        }
    };
}

macro_rules! method_name {
    (get) => {
        "GET"
    };
    (post) => {
        "POST"
    };
    (put) => {
        "PUT"
    };
    (patch) => {
        "PATCH"
    };
    (delete) => {
        "DELETE"
    };
}

/// One served path pattern (actix syntax, `{name}` segments) and the methods it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [&'static str],
}

route_table! {
    // First: actix tries routes in this order and matches each `{segment}` pattern with a
    // regex, so the hot path should not pay for the patterns of other routes (none overlap).
    "/v1/functions/{function}/invoke" => { post: invoke::invoke },
    "/" => { get: discovery::versions },
    "/v1" => { get: discovery::v1 },
    "/v1/" => { get: discovery::v1 },
    "/healthcheck" => { get: discovery::healthcheck },
    "/metrics" => { get: discovery::metrics },
    "/v1/runtimes" => { get: runtimes::list, post: runtimes::create },
    "/v1/runtimes/{id}" => {
        get: runtimes::show,
        patch: runtimes::update,
        delete: runtimes::delete,
    },
    "/v1/functions" => { get: functions::list, post: functions::create },
    "/v1/functions/{function}" => {
        get: functions::show,
        patch: functions::update,
        delete: functions::delete,
    },
    "/v1/functions/{function}/code" => { get: functions::download, put: functions::upload },
    "/v1/functions/{function}/versions" => { get: versions::list, post: versions::publish },
    "/v1/functions/{function}/versions/{version}" => {
        get: versions::show,
        delete: versions::delete,
    },
    "/v1/functions/{function}/aliases" => { get: aliases::list, post: aliases::create },
    "/v1/functions/{function}/aliases/{alias}" => {
        get: aliases::show,
        patch: aliases::update,
        delete: aliases::delete,
    },
    "/v1/functions/{function}/aliases/{alias}/comparison" => { get: aliases::comparison },
    "/v1/functions/{function}/event-config" => {
        get: events::show,
        put: events::put,
        delete: events::delete,
    },
    "/v1/functions/{function}/dead-letters" => { get: events::dead_letters },
    "/v1/functions/{function}/dead-letters/{id}/replay" => { post: events::replay },
    "/v1/triggers" => { get: triggers::list, post: triggers::create },
    "/v1/triggers/{trigger}" => {
        get: triggers::show,
        patch: triggers::update,
        delete: triggers::delete,
    },
    "/v1/webhooks/{token}" => { post: webhooks::call },
    "/v1/hooks" => { get: hooks::list, post: hooks::create },
    "/v1/hooks/{hook}" => { get: hooks::show, delete: hooks::delete },
    "/v1/pipelines" => { get: pipelines::list, post: pipelines::create },
    "/v1/pipelines/{pipeline}" => {
        get: pipelines::show,
        put: pipelines::update,
        delete: pipelines::delete,
    },
    "/v1/pipelines/{pipeline}/invoke" => { post: pipelines::invoke },
    "/v1/pipeline-runs" => { get: pipelines::list_runs },
    "/v1/pipeline-runs/{id}" => { get: pipelines::show_run },
    "/v1/executions" => { get: executions::list },
    "/v1/executions/{id}" => { get: executions::show, delete: executions::delete },
    "/v1/executions/{id}/log" => { get: executions::log },
    "/v1/usage" => { get: executions::usage },
    "/v1/quotas/{project_id}" => {
        get: quotas::show,
        put: quotas::update,
        delete: quotas::reset,
    },
    "/v1/agents" => { get: agents::list },
    "/internal/v1/code/{sha256}" => { get: internal::code },
}
