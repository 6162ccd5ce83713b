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
mod forward;
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
use crate::api::enforce;
use crate::auth::objects::{self as auth_q, Object};
use crate::auth::policy::{self, Permission};
use crate::auth::{Principal, Scope};
use crate::link::LinkRegistry;
use crate::privacy::View;
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
    /// The same with their regions, for the callers' scopes.
    pub estate_configs: Arc<Vec<crate::config::EstateConfig>>,
    /// Changes published by the writer after each commit.
    pub stream: Arc<Feed>,
    pub response_target_ms: i64,
    /// Ends the watch streams when the hub stops.
    pub shutdown: CancellationToken,
    /// The same bearer tokens as the HTTP API, in the `authorization` metadata.
    pub auth: Arc<crate::auth::Authenticator>,
    /// Active, standby or the only hub: a standby's actions are carried out by the active.
    pub role: Arc<crate::cluster::Role>,
    pub forwarder: Arc<crate::cluster::forward::Forwarder>,
}

/// A path segment as it goes into a forwarded action's URL.
fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

type UpdateStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// An empty proto string is an absent field, as an absent JSON field is for the HTTP API.
fn given(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

impl CentreService {
    /// Who is calling: the principal of the request's `authorization: Bearer` metadata
    /// (UNAUTHENTICATED without one). Every RPC starts here; the principal is also put in the
    /// request's extensions, so what the RPC hands on (a watch) can read it from there.
    pub async fn caller<T>(&self, request: &mut Request<T>) -> Result<Arc<Principal>, Status> {
        if let Some(p) = request.extensions().get::<Arc<Principal>>() {
            return Ok(p.clone());
        }
        let principal = self.auth.grpc(request.metadata()).await?;
        request.extensions_mut().insert(principal.clone());
        Ok(principal)
    }

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

    async fn alarm(&self, id: i64, view: &View) -> Result<Alarm, Status> {
        match find_alarm(&self.pool, id).await.map_err(convert::store)? {
            Some(row) => Ok(convert::alarm(&row, view)),
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
        mut request: Request<WatchAlarmsRequest>,
    ) -> Result<Response<Self::WatchAlarmsStream>, Status> {
        let caller = self.caller(&mut request).await?;
        let view = View::for_role(caller.role.as_str());
        self.allow(&caller, Permission::ReadAlarms)?;
        let estate = self.estate_filter(request.into_inner().estate_id)?;
        if let Some(e) = &estate {
            self.in_scope(&caller, e)?;
        }
        // Subscribed before the snapshot is read, so no change falls between.
        let rx = self.stream.subscribe(Resume::Fresh).rx;
        let watch = watch::Alarms {
            pool: self.pool.clone(),
            estate,
            view,
            visible: self.visible(&caller),
        };
        Ok(Response::new(Box::pin(watch::spawn(watch, rx, self.shutdown.clone()))))
    }

    async fn watch_incidents(
        &self,
        mut request: Request<WatchIncidentsRequest>,
    ) -> Result<Response<Self::WatchIncidentsStream>, Status> {
        let caller = self.caller(&mut request).await?;
        self.allow(&caller, Permission::ReadIncidents)?;
        let estate = self.estate_filter(request.into_inner().estate_id)?;
        if let Some(e) = &estate {
            self.in_scope(&caller, e)?;
        }
        let rx = self.stream.subscribe(Resume::Fresh).rx;
        let watch = watch::Incidents {
            pool: self.pool.clone(),
            estate,
            visible: self.visible(&caller),
            response_target_ms: self.response_target_ms,
        };
        Ok(Response::new(Box::pin(watch::spawn(watch, rx, self.shutdown.clone()))))
    }

    async fn acknowledge_alarm(
        &self,
        mut request: Request<AcknowledgeAlarmRequest>,
    ) -> Result<Response<Alarm>, Status> {
        let caller = self.caller(&mut request).await?;
        let credential = forward::credential(&request);
        let actor = caller.actor(request.remote_addr().map(|a| a.ip()));
        let view = View::for_role(caller.role.as_str());
        self.allow(&caller, Permission::AckAlarm)?;
        let r = request.into_inner();
        self.object_in_scope(&caller, Object::Alarm, r.alarm_id).await?;
        let ack = AckRequest {
            operator: Some(caller.user.clone()),
            note: given(r.note),
        };
        let path = format!("/api/v1/alarms/{}/ack", r.alarm_id);
        if self.on_active(credential.as_deref(), &path, &ack).await?.is_none() {
            let (operator, note) = ack.checked().map_err(convert::invalid)?;
            self.writer
                .acknowledge(&actor, r.alarm_id, operator, note)
                .await
                .map_err(convert::ack)?;
        }
        Ok(Response::new(self.alarm(r.alarm_id, &view).await?))
    }

    async fn shelve_alarm(&self, mut request: Request<ShelveAlarmRequest>) -> Result<Response<Alarm>, Status> {
        let caller = self.caller(&mut request).await?;
        let credential = forward::credential(&request);
        let actor = caller.actor(request.remote_addr().map(|a| a.ip()));
        let view = View::for_role(caller.role.as_str());
        self.allow(&caller, Permission::ShelveAlarm)?;
        let r = request.into_inner();
        self.object_in_scope(&caller, Object::Alarm, r.alarm_id).await?;
        let alarm = self.alarm(r.alarm_id, &view).await?;
        actions::check_shelve(caller.role, &alarm.priority, Some(r.minutes)).map_err(convert::invalid)?;
        let shelve = ShelveRequest {
            minutes: Some(r.minutes),
            reason: given(r.reason),
            operator: Some(caller.user.clone()),
        };
        let path = format!("/api/v1/alarms/{}/shelve", r.alarm_id);
        if self.on_active(credential.as_deref(), &path, &shelve).await?.is_none() {
            let op = shelve.op(r.alarm_id).map_err(convert::invalid)?;
            self.writer.op(&actor, op).await.map_err(convert::action)?;
        }
        Ok(Response::new(self.alarm(r.alarm_id, &view).await?))
    }

    async fn transition_incident(
        &self,
        mut request: Request<TransitionIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let caller = self.caller(&mut request).await?;
        let credential = forward::credential(&request);
        let actor = caller.actor(request.remote_addr().map(|a| a.ip()));
        self.allow(&caller, Permission::WorkIncident)?;
        let r = request.into_inner();
        self.object_in_scope(&caller, Object::Incident, r.incident_id).await?;
        let transition = TransitionRequest {
            to: given(r.to),
            note: given(r.note),
            actor: Some(caller.user.clone()),
            reason: given(r.reason),
            override_: r.supervisor_override.map(|o| OverrideRequest {
                supervisor: given(o.supervisor),
                reason: given(o.reason),
            }),
        };
        let path = format!("/api/v1/incidents/{}/transition", r.incident_id);
        if self
            .on_active(credential.as_deref(), &path, &transition)
            .await?
            .is_none()
        {
            let op = transition.op(r.incident_id, &caller).map_err(convert::invalid)?;
            self.writer.op(&actor, op).await.map_err(convert::action)?;
        }
        Ok(Response::new(self.incident(r.incident_id).await?))
    }

    async fn complete_step(&self, mut request: Request<CompleteStepRequest>) -> Result<Response<Incident>, Status> {
        let caller = self.caller(&mut request).await?;
        let credential = forward::credential(&request);
        let actor = caller.actor(request.remote_addr().map(|a| a.ip()));
        self.allow(&caller, Permission::WorkIncident)?;
        let r = request.into_inner();
        self.object_in_scope(&caller, Object::Incident, r.incident_id).await?;
        let step = StepRequest {
            actor: Some(caller.user.clone()),
            note: given(r.note),
            skipped: Some(r.skipped),
        };
        let path = format!("/api/v1/incidents/{}/steps/{}/done", r.incident_id, segment(&r.step));
        if self.on_active(credential.as_deref(), &path, &step).await?.is_none() {
            let op = step.op(r.incident_id, r.step).map_err(convert::invalid)?;
            self.writer.op(&actor, op).await.map_err(convert::action)?;
        }
        Ok(Response::new(self.incident(r.incident_id).await?))
    }

    async fn send_command(&self, mut request: Request<SendCommandRequest>) -> Result<Response<CommandRecord>, Status> {
        let caller = self.caller(&mut request).await?;
        let credential = forward::credential(&request);
        let actor = caller.actor(request.remote_addr().map(|a| a.ip()));
        self.allow(&caller, Permission::SendCommand)?;
        let r = request.into_inner();
        if let Some(estate) = given(r.estate_id.clone()) {
            self.in_scope(&caller, &estate)?;
        }
        let command = CommandRequest {
            estate: given(r.estate_id),
            action: given(r.action),
            args: Some(r.args.into_iter().collect()),
            operator: Some(caller.user.clone()),
            reason: given(r.reason),
            incident: (r.incident_id != 0).then_some(r.incident_id),
        };
        // The gateway's stream, which the command goes out on, lives on the active hub.
        let path = format!("/api/v1/devices/{}/commands", segment(&r.device_id));
        if let Some(answer) = self.on_active(credential.as_deref(), &path, &command).await? {
            let id = answer["id"]
                .as_i64()
                .ok_or_else(|| Status::internal(format!("the active hub's answer names no command: {answer}")))?;
            let row = crate::commands::queries::find(&self.pool, id)
                .await
                .map_err(convert::store)?
                .ok_or_else(|| Status::internal(format!("command {id} is not stored")))?;
            return Ok(Response::new(convert::command(&row)));
        }
        let row = actions::send_command(
            &self.pool,
            &self.writer,
            &self.links,
            &caller,
            &actor,
            r.device_id,
            command,
        )
        .await
        .map_err(convert::command_error)?;
        Ok(Response::new(convert::command(&row)))
    }
}
