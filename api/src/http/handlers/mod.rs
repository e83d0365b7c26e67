//! Route table and handlers, one module per resource.

mod agents;
mod aliases;
mod discovery;
mod executions;
mod functions;
mod internal;
mod invoke;
mod quotas;
mod runtimes;
mod versions;

use std::sync::Arc;

use actix_web::web;

use super::AppState;

type State = web::Data<AppState>;

fn state(data: &State) -> Arc<AppState> {
    data.clone().into_inner()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").get(discovery::versions))
        .service(web::resource("/v1").get(discovery::v1))
        .service(web::resource("/v1/").get(discovery::v1))
        .service(web::resource("/healthcheck").get(discovery::healthcheck))
        .service(
            web::resource("/v1/runtimes")
                .get(runtimes::list)
                .post(runtimes::create),
        )
        .service(
            web::resource("/v1/runtimes/{id}")
                .get(runtimes::show)
                .patch(runtimes::update)
                .delete(runtimes::delete),
        )
        .service(
            web::resource("/v1/functions")
                .get(functions::list)
                .post(functions::create),
        )
        .service(
            web::resource("/v1/functions/{function}")
                .get(functions::show)
                .patch(functions::update)
                .delete(functions::delete),
        )
        .service(
            web::resource("/v1/functions/{function}/code")
                .get(functions::download)
                .put(functions::upload),
        )
        .service(web::resource("/v1/functions/{function}/invoke").post(invoke::invoke))
        .service(
            web::resource("/v1/functions/{function}/versions")
                .get(versions::list)
                .post(versions::publish),
        )
        .service(
            web::resource("/v1/functions/{function}/versions/{version}")
                .get(versions::show)
                .delete(versions::delete),
        )
        .service(
            web::resource("/v1/functions/{function}/aliases")
                .get(aliases::list)
                .post(aliases::create),
        )
        .service(
            web::resource("/v1/functions/{function}/aliases/{alias}")
                .get(aliases::show)
                .patch(aliases::update)
                .delete(aliases::delete),
        )
        .service(web::resource("/v1/executions").get(executions::list))
        .service(
            web::resource("/v1/executions/{id}")
                .get(executions::show)
                .delete(executions::delete),
        )
        .service(web::resource("/v1/executions/{id}/log").get(executions::log))
        .service(web::resource("/v1/usage").get(executions::usage))
        .service(
            web::resource("/v1/quotas/{project_id}")
                .get(quotas::show)
                .put(quotas::update)
                .delete(quotas::reset),
        )
        .service(web::resource("/v1/agents").get(agents::list))
        .service(web::resource("/internal/v1/code/{sha256}").get(internal::code));
}
