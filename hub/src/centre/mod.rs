//! The gRPC `CommandCentre` service (docs/design.md, gRPC): consoles watch the standing
//! alarms and the open incidents (`watch.rs`: a snapshot, then each committed change) and
//! carry out the operator actions of the HTTP API. The actions are the HTTP API's own —
//! the same request values, checks and writer calls ([`crate::actions`]) — so the two front
//! doors refuse and accept the same things; only the statuses differ (`convert.rs`).
//!
//! Each RPC is authorized as its HTTP route is (`auth::policy`, the same permission, the
//! object's estate in the caller's scope, else PERMISSION_DENIED); the watches send only
//! alarms and incidents of the caller's estates.

mod convert;
mod watch;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use gatehouse_proto::command_centre_server::CommandCentre;
use gatehouse_proto::{
    AcknowledgeAlarmRequest, Alarm, AlarmUpdate, CommandRecord, CompleteStepRequest, Incident, IncidentUpdate,
    SendCommandRequest, ShelveAlarmRequest, TransitionIncidentRequest, WatchAlarmsRequest, WatchIncidentsRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::actions::{
    self, AckRequest, CommandRequest, OverrideRequest, ShelveRequest, StepRequest, TransitionRequest,
};
use crate::alarms::queries::find_alarm;
use crate::auth::enforce;
use crate::auth::policy::{self, Permission};
use crate::auth::queries::{self as auth_q, Object};
use crate::auth::{Principal, Scope};
use crate::link::LinkRegistry;
use crate::store::Pool;
use crate::stream::{Feed, Resume};
use crate::writer::WriterHandle;

pub use gatehouse_proto::command_centre_server::CommandCentreServer;

/// What the service needs from the hub.
#[derive(Clone)]
pub struct CentreService {
    pub pool: Pool,
    pub writer: WriterHandle,
    pub links: LinkRegistry,
    /// The configured estates (a watch filter must name one of them).
    pub estates: Arc<HashSet<String>>,
    /// `[[api_tokens]]`, for the placeholder in [`caller`].
    pub tokens: Arc<crate::auth::TokenTable>,
    /// The same with their regions, for the callers' scopes.
    pub estate_configs: Arc<Vec<crate::config::EstateConfig>>,
    /// Changes published by the writer after each commit.
    pub stream: Arc<Feed>,
    pub response_target_ms: i64,
    /// Ends the watch streams when the hub stops.
    pub shutdown: CancellationToken,
}

type UpdateStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// An empty proto string is an absent field, as an absent JSON field is for the HTTP API.
fn given(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

/// The principal behind a call.
/// PLACEHOLDER until the sign-in work adds the token check to this service (issue 12 §3): a
/// call with no principal in its extensions is treated as the HTTP API's header-less request
/// is (`auth::placeholder_bearer_or_admin`): `authorization: Bearer <token>` of
/// `[[api_tokens]]` is that token's principal (a wrong one UNAUTHENTICATED), none at all the
/// placeholder's principal. This is the one place that does it.
fn caller<T>(tokens: &crate::auth::TokenTable, request: &Request<T>) -> Result<Arc<Principal>, Status> {
    if let Some(p) = request.extensions().get::<Arc<Principal>>() {
        return Ok(p.clone());
    }
    match request.metadata().get("authorization") {
        None => Ok(Arc::new(crate::auth::placeholder_principal())),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| tokens.lookup(t.trim()))
            .ok_or_else(|| Status::unauthenticated("invalid token")),
    }
}

impl CentreService {
    /// The caller's role has `permission`.
    fn allow(&self, caller: &Principal, permission: Permission) -> Result<(), Status> {
        if policy::allows(caller.role, permission) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "a {} may not {permission:?}",
                caller.role.as_str()
            )))
        }
    }

    /// `estate` is in the caller's scope.
    fn in_scope(&self, caller: &Principal, estate: &str) -> Result<(), Status> {
        if enforce::covers(caller, &self.estate_configs, estate) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "estate {estate:?} is outside your scope"
            )))
        }
    }

    /// The estates a watch of `caller` may show (None: all).
    fn visible(&self, caller: &Principal) -> Option<Arc<HashSet<String>>> {
        match caller.scope {
            Scope::All => None,
            _ => Some(Arc::new(enforce::visible_estates(caller, &self.estate_configs))),
        }
    }

    /// The estate of `object` `id` is in the caller's scope (NOT_FOUND: no such object).
    async fn object_in_scope(&self, caller: &Principal, object: Object, id: i64) -> Result<(), Status> {
        match auth_q::estate_of(&self.pool, object, id)
            .await
            .map_err(convert::store)?
        {
            Some(estate) => self.in_scope(caller, &estate),
            None => Err(Status::not_found(format!("{} {id} not found", object.name()))),
        }
    }

    fn estate_filter(&self, estate: String) -> Result<Option<String>, Status> {
        match given(estate) {
            Some(e) if !self.estates.contains(&e) => Err(Status::invalid_argument(format!("unknown estate {e:?}"))),
            e => Ok(e),
        }
    }

    async fn alarm(&self, id: i64) -> Result<Alarm, Status> {
        match find_alarm(&self.pool, id).await.map_err(convert::store)? {
            Some(row) => Ok(convert::alarm(&row)),
            None => Err(Status::not_found(format!("alarm {id} not found"))),
        }
    }

    async fn incident(&self, id: i64) -> Result<Incident, Status> {
        match watch::Incidents::read(&self.pool, id, self.response_target_ms)
            .await
            .map_err(convert::store)?
        {
            Some((incident, _)) => Ok(incident),
            None => Err(Status::not_found(format!("incident {id} not found"))),
        }
    }
}

#[tonic::async_trait]
impl CommandCentre for CentreService {
    type WatchAlarmsStream = UpdateStream<AlarmUpdate>;
    type WatchIncidentsStream = UpdateStream<IncidentUpdate>;

    async fn watch_alarms(
        &self,
        request: Request<WatchAlarmsRequest>,
    ) -> Result<Response<Self::WatchAlarmsStream>, Status> {
        let who = caller(&self.tokens, &request)?;
        self.allow(&who, Permission::ReadAlarms)?;
        let estate = self.estate_filter(request.into_inner().estate_id)?;
        if let Some(e) = &estate {
            self.in_scope(&who, e)?;
        }
        // Subscribed before the snapshot is read, so no change falls between.
        let rx = self.stream.subscribe(Resume::Fresh).rx;
        let watch = watch::Alarms {
            pool: self.pool.clone(),
            estate,
            visible: self.visible(&who),
        };
        Ok(Response::new(Box::pin(watch::spawn(watch, rx, self.shutdown.clone()))))
    }

    async fn watch_incidents(
        &self,
        request: Request<WatchIncidentsRequest>,
    ) -> Result<Response<Self::WatchIncidentsStream>, Status> {
        let who = caller(&self.tokens, &request)?;
        self.allow(&who, Permission::ReadIncidents)?;
        let estate = self.estate_filter(request.into_inner().estate_id)?;
        if let Some(e) = &estate {
            self.in_scope(&who, e)?;
        }
        let rx = self.stream.subscribe(Resume::Fresh).rx;
        let watch = watch::Incidents {
            pool: self.pool.clone(),
            estate,
            visible: self.visible(&who),
            response_target_ms: self.response_target_ms,
        };
        Ok(Response::new(Box::pin(watch::spawn(watch, rx, self.shutdown.clone()))))
    }

    async fn acknowledge_alarm(&self, request: Request<AcknowledgeAlarmRequest>) -> Result<Response<Alarm>, Status> {
        let who = caller(&self.tokens, &request)?;
        self.allow(&who, Permission::AckAlarm)?;
        let r = request.into_inner();
        self.object_in_scope(&who, Object::Alarm, r.alarm_id).await?;
        let (operator, note) = AckRequest {
            operator: given(r.operator),
            note: given(r.note),
        }
        .checked()
        .map_err(convert::invalid)?;
        self.writer
            .acknowledge(r.alarm_id, operator, note)
            .await
            .map_err(convert::ack)?;
        Ok(Response::new(self.alarm(r.alarm_id).await?))
    }

    async fn shelve_alarm(&self, request: Request<ShelveAlarmRequest>) -> Result<Response<Alarm>, Status> {
        let who = caller(&self.tokens, &request)?;
        self.allow(&who, Permission::ShelveAlarm)?;
        let r = request.into_inner();
        self.object_in_scope(&who, Object::Alarm, r.alarm_id).await?;
        let alarm = self.alarm(r.alarm_id).await?;
        actions::check_shelve(who.role, &alarm.priority, Some(r.minutes)).map_err(convert::invalid)?;
        let op = ShelveRequest {
            minutes: Some(r.minutes),
            reason: given(r.reason),
            operator: given(r.operator),
        }
        .op(r.alarm_id)
        .map_err(convert::invalid)?;
        self.writer.op(op).await.map_err(convert::action)?;
        Ok(Response::new(self.alarm(r.alarm_id).await?))
    }

    async fn transition_incident(
        &self,
        request: Request<TransitionIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let who = caller(&self.tokens, &request)?;
        self.allow(&who, Permission::WorkIncident)?;
        let r = request.into_inner();
        self.object_in_scope(&who, Object::Incident, r.incident_id).await?;
        let op = TransitionRequest {
            to: given(r.to),
            note: given(r.note),
            actor: given(r.actor),
            reason: given(r.reason),
            override_: r.supervisor_override.map(|o| OverrideRequest {
                supervisor: given(o.supervisor),
                reason: given(o.reason),
            }),
        }
        .op(r.incident_id, &who)
        .map_err(convert::invalid)?;
        self.writer.op(op).await.map_err(convert::action)?;
        Ok(Response::new(self.incident(r.incident_id).await?))
    }

    async fn complete_step(&self, request: Request<CompleteStepRequest>) -> Result<Response<Incident>, Status> {
        let who = caller(&self.tokens, &request)?;
        self.allow(&who, Permission::WorkIncident)?;
        let r = request.into_inner();
        self.object_in_scope(&who, Object::Incident, r.incident_id).await?;
        let op = StepRequest {
            actor: given(r.actor),
            note: given(r.note),
            skipped: Some(r.skipped),
        }
        .op(r.incident_id, r.step)
        .map_err(convert::invalid)?;
        self.writer.op(op).await.map_err(convert::action)?;
        Ok(Response::new(self.incident(r.incident_id).await?))
    }

    async fn send_command(&self, request: Request<SendCommandRequest>) -> Result<Response<CommandRecord>, Status> {
        let who = caller(&self.tokens, &request)?;
        self.allow(&who, Permission::SendCommand)?;
        let r = request.into_inner();
        if let Some(estate) = given(r.estate_id.clone()) {
            self.in_scope(&who, &estate)?;
        }
        let command = CommandRequest {
            estate: given(r.estate_id),
            action: given(r.action),
            args: Some(r.args.into_iter().collect()),
            operator: given(r.operator),
            reason: given(r.reason),
            incident: (r.incident_id != 0).then_some(r.incident_id),
        };
        let row = actions::send_command(&self.pool, &self.writer, &self.links, &who, r.device_id, command)
            .await
            .map_err(convert::command_error)?;
        Ok(Response::new(convert::command(&row)))
    }
}
