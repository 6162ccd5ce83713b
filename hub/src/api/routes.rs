//! The route table: every route of the HTTP server declared once, with its method, path,
//! handler and authorization [`Decision`]. The router is built from it ([`super::router`]),
//! each route wrapped in `auth::enforce` with its own decision, so a route without a
//! decision cannot exist; [`table`] lists them (method, path, decision) for tests and docs.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{
    AppState, alarms, answer, audit, auth, board, commands, devices, estates, health, incidents, kpi, rota, stream,
};
use crate::api::enforce::{Decision, EstateFrom as E};
use crate::auth::objects::Object as O;
use crate::auth::policy::Permission as P;

/// One declared route (without its handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDecl {
    pub method: &'static str,
    /// The full path, `{id}` for a path parameter.
    pub path: &'static str,
    pub decision: Decision,
}

/// A declared route with its handler.
pub(super) struct Route {
    pub decl: RouteDecl,
    pub handler: MethodRouter<AppState>,
}

fn route<H, T>(method: &'static str, path: &'static str, decision: Decision, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match method {
        "POST" => MethodFilter::POST,
        "DELETE" => MethodFilter::DELETE,
        "PATCH" => MethodFilter::PATCH,
        _ => MethodFilter::GET,
    };
    Route {
        decl: RouteDecl { method, path, decision },
        handler: on(filter, handler),
    }
}

const fn need(p: P, e: E) -> Decision {
    Decision::Need(p, e)
}

const PUBLIC: Decision = Decision::Public;

/// The API's prefix: routes under it go through authentication.
pub const API: &str = "/api/v1";

/// Every route.
pub(super) fn routes() -> Vec<Route> {
    vec![
        // The board's files, health and metrics: no data of any estate.
        route("GET", "/", PUBLIC, board::index),
        route("GET", "/board/{*path}", PUBLIC, board::file),
        route("GET", "/healthz", PUBLIC, health::healthz),
        route("GET", "/readyz", PUBLIC, health::readyz),
        route("GET", "/metrics", PUBLIC, health::metrics),
        // Answering a page: the signed link (or the SMS gateway's bearer token) is the
        // credential; no cookie is read, so no CSRF rule applies. GET never acts.
        route("GET", "/n/{token}", PUBLIC, answer::show),
        route("POST", "/n/{token}", PUBLIC, answer::post),
        route("POST", "/api/v1/notify/sms/inbound", PUBLIC, answer::sms_inbound),
        route("GET", "/api/v1/estates", need(P::ReadEstates, E::List), estates::list),
        route("GET", "/api/v1/alarms", need(P::ReadAlarms, E::List), alarms::list),
        route(
            "GET",
            "/api/v1/alarms/{id}/history",
            need(P::ReadAlarms, E::PathId(O::Alarm)),
            alarms::history,
        ),
        route(
            "POST",
            "/api/v1/alarms/{id}/ack",
            need(P::AckAlarm, E::PathId(O::Alarm)),
            alarms::acknowledge,
        ),
        route(
            "POST",
            "/api/v1/alarms/{id}/shelve",
            need(P::ShelveAlarm, E::PathId(O::Alarm)),
            alarms::shelve,
        ),
        route(
            "POST",
            "/api/v1/alarms/{id}/out-of-service",
            need(P::OutOfService, E::PathId(O::Alarm)),
            alarms::out_of_service,
        ),
        route(
            "GET",
            "/api/v1/devices",
            need(P::ReadDevices, E::List),
            devices::registry,
        ),
        route(
            "GET",
            "/api/v1/devices/maintenance",
            need(P::ReadDevices, E::List),
            devices::list,
        ),
        route(
            "GET",
            "/api/v1/devices/{id}/points",
            need(P::ReadDevices, E::DeviceWithQueryEstate),
            devices::points,
        ),
        route(
            "POST",
            "/api/v1/devices/{id}/maintenance",
            need(P::Maintenance, E::DeviceWithBodyEstate),
            devices::maintenance,
        ),
        route(
            "POST",
            "/api/v1/devices/{id}/commands",
            need(P::SendCommand, E::DeviceWithBodyEstate),
            commands::send,
        ),
        route(
            "GET",
            "/api/v1/commands",
            need(P::ReadCommands, E::List),
            commands::list,
        ),
        route(
            "GET",
            "/api/v1/commands/{id}",
            need(P::ReadCommands, E::PathId(O::Command)),
            commands::get,
        ),
        route(
            "GET",
            "/api/v1/incidents",
            need(P::ReadIncidents, E::List),
            incidents::list,
        ),
        route(
            "POST",
            "/api/v1/incidents",
            need(P::OpenIncident, E::BodyEstate),
            incidents::open,
        ),
        route(
            "GET",
            "/api/v1/incidents/{id}",
            need(P::ReadIncidents, E::PathId(O::Incident)),
            incidents::detail,
        ),
        route(
            "POST",
            "/api/v1/incidents/{id}/transition",
            need(P::WorkIncident, E::PathId(O::Incident)),
            incidents::transition,
        ),
        route(
            "POST",
            "/api/v1/incidents/{id}/steps/{step}/done",
            need(P::WorkIncident, E::PathId(O::Incident)),
            incidents::step_done,
        ),
        route(
            "GET",
            "/api/v1/notifications",
            need(P::ReadNotifications, E::List),
            incidents::notifications,
        ),
        // Filtered event by event by the handler (`api::stream`).
        route("GET", "/api/v1/stream", need(P::ReadStream, E::List), stream::stream),
        route(
            "GET",
            "/api/v1/kpi/alarms",
            need(P::ReadAlarmKpi, E::AllEstates),
            kpi::alarms,
        ),
        route(
            "GET",
            "/api/v1/coverage",
            need(P::ReadCoverage, E::List),
            rota::coverage,
        ),
        route(
            "GET",
            "/api/v1/kpi/coverage",
            need(P::ReadCoverage, E::AllEstates),
            rota::kpi,
        ),
        route("GET", "/api/v1/rota/gaps", need(P::ReadRota, E::List), rota::gaps),
        route(
            "GET",
            "/api/v1/rota/proposals",
            need(P::ReadRota, E::List),
            rota::proposals,
        ),
        route(
            "POST",
            "/api/v1/rota/proposals/{id}/accept",
            need(P::AcceptProposal, E::PathProposal),
            rota::accept,
        ),
        route(
            "POST",
            "/api/v1/rota/plan",
            need(P::PlanRota, E::BodyEstates),
            rota::plan,
        ),
        route(
            "POST",
            "/api/v1/rota/check-in",
            need(P::CheckInOut, E::BodyPost),
            rota::check_in,
        ),
        route(
            "POST",
            "/api/v1/rota/check-out",
            need(P::CheckInOut, E::BodyGuard),
            rota::check_out,
        ),
        route(
            "POST",
            "/api/v1/rota/absences",
            need(P::ChangeRota, E::BodyGuard),
            rota::absence,
        ),
        route(
            "GET",
            "/api/v1/rota/assignments",
            need(P::ReadRota, E::List),
            rota::assignments,
        ),
        route(
            "POST",
            "/api/v1/rota/assignments",
            need(P::ChangeRota, E::BodyPost),
            rota::assign,
        ),
        route(
            "DELETE",
            "/api/v1/rota/assignments/{id}",
            need(P::ChangeRota, E::PathId(O::Assignment)),
            rota::unassign,
        ),
        route(
            "POST",
            "/api/v1/rota/import",
            need(P::ChangeRota, E::CsvEstates),
            rota::import,
        ),
        route("GET", "/api/v1/rota/export", need(P::ReadRota, E::List), rota::export),
        route("GET", "/api/v1/rota/patrols", need(P::ReadRota, E::List), rota::patrols),
        route(
            "POST",
            "/api/v1/rota/patrols/{id}/record",
            need(P::RecordPatrol, E::PathId(O::Patrol)),
            rota::patrol_record,
        ),
        route(
            "GET",
            "/api/v1/rota/handovers",
            need(P::ReadRota, E::List),
            rota::handovers,
        ),
        route(
            "POST",
            "/api/v1/rota/handovers/{id}/ack",
            need(P::AckHandover, E::PathId(O::Handover)),
            rota::handover_ack,
        ),
        route(
            "POST",
            "/api/v1/rota/notes",
            need(P::WriteNote, E::BodyPost),
            rota::note,
        ),
        route(
            "GET",
            "/api/v1/rota/attendance",
            need(P::ReadRota, E::List),
            rota::attendance,
        ),
        route("GET", "/api/v1/rota/guards", need(P::ReadRota, E::List), rota::guards),
        // Signing in and out; the admin's users, tokens and audit log.
        route("POST", "/api/v1/login", PUBLIC, auth::login),
        route("POST", "/api/v1/logout", need(P::Session, E::Nothing), auth::logout),
        route("GET", "/api/v1/me", need(P::Session, E::Nothing), auth::me),
        route(
            "GET",
            "/api/v1/tokens",
            need(P::ManageTokens, E::Nothing),
            auth::list_tokens,
        ),
        route(
            "POST",
            "/api/v1/tokens",
            need(P::ManageTokens, E::Nothing),
            auth::create_token,
        ),
        route(
            "DELETE",
            "/api/v1/tokens/{id}",
            need(P::ManageTokens, E::Nothing),
            auth::revoke_token,
        ),
        route(
            "GET",
            "/api/v1/users",
            need(P::ManageUsers, E::Nothing),
            auth::list_users,
        ),
        route(
            "POST",
            "/api/v1/users",
            need(P::ManageUsers, E::Nothing),
            auth::create_user,
        ),
        route(
            "PATCH",
            "/api/v1/users/{name}",
            need(P::ManageUsers, E::Nothing),
            auth::change_user,
        ),
        route(
            "DELETE",
            "/api/v1/users/{name}",
            need(P::ManageUsers, E::Nothing),
            auth::delete_user,
        ),
        route("GET", "/api/v1/audit", need(P::ReadAudit, E::Nothing), audit::list),
        route(
            "GET",
            "/api/v1/audit/verify",
            need(P::ReadAudit, E::Nothing),
            audit::verify,
        ),
    ]
}

/// Every declared route: method, path and decision.
pub fn table() -> Vec<RouteDecl> {
    routes().into_iter().map(|r| r.decl).collect()
}

/// The method of a declaration as `http::Method`.
pub fn method(decl: &RouteDecl) -> Method {
    Method::from_bytes(decl.method.as_bytes()).unwrap_or(Method::GET)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router is built from the table only: no `.route("...")` elsewhere in the API.
    #[test]
    fn no_route_is_added_outside_the_table() {
        for (name, src) in [
            ("api/mod.rs", include_str!("mod.rs")),
            ("api/limits.rs", include_str!("limits.rs")),
        ] {
            assert!(!src.contains(".route(\""), "{name} adds a route outside the table");
        }
        assert!(
            table()
                .iter()
                .all(|d| matches!(d.method, "GET" | "POST" | "DELETE" | "PATCH"))
        );
    }
}
