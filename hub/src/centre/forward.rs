//! A console's action on a standby hub (several hubs on one PostgreSQL) is carried out by the
//! active hub, through the HTTP route that does the same (`cluster::forward`), as the caller:
//! the same checks, the same audit, one writer. The RPC then answers from the database, which
//! the active has committed to, exactly as on the active hub.

use serde::Serialize;
use serde_json::Value;
use tonic::{Request, Status};

use super::CentreService;

/// The caller's `authorization` metadata, passed on as their HTTP credential.
pub(super) fn credential<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl CentreService {
    /// On a standby: `POST path` with `body` on the active hub, `Ok(Some(its answer))`.
    /// On the active or only hub: `Ok(None)`, the action is this hub's to carry out.
    pub(super) async fn on_active(
        &self,
        credential: Option<&str>,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Option<Value>, Status> {
        if !self.role.is_standby() {
            return Ok(None);
        }
        let body = serde_json::to_value(body)
            .map_err(|e| Status::internal(format!("cannot write the action as JSON: {e}")))?;
        match self.forwarder.post_json(path, credential, &body).await {
            Ok((status, answer)) if (200..300).contains(&status) => Ok(Some(answer)),
            Ok((status, answer)) => Err(status_of(status, &answer)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// The gRPC status of the active hub's HTTP refusal, with its message.
fn status_of(status: u16, answer: &Value) -> Status {
    let error = answer["error"].as_str().unwrap_or("refused by the active hub");
    let message = match &answer["detail"] {
        Value::Null => error.to_owned(),
        Value::String(d) => format!("{error}: {d}"),
        d => format!("{error}: {d}"),
    };
    match status {
        400 | 413 | 422 => Status::invalid_argument(message),
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::not_found(message),
        409 => Status::failed_precondition(message),
        429 => Status::resource_exhausted(message),
        503 => Status::unavailable(message),
        _ => Status::internal(format!("the active hub answered {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tonic::Code;

    use super::status_of;

    #[test]
    fn refusals_keep_their_meaning_and_message() {
        let s = status_of(409, &json!({"error": "alarm already acknowledged", "detail": 7}));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "alarm already acknowledged: 7");
        let s = status_of(404, &json!({"error": "alarm not found", "detail": "x"}));
        assert_eq!((s.code(), s.message()), (Code::NotFound, "alarm not found: x"));
        assert_eq!(status_of(401, &json!({"error": "no"})).code(), Code::Unauthenticated);
        assert_eq!(status_of(403, &Value::Null).code(), Code::PermissionDenied);
        assert_eq!(status_of(422, &Value::Null).code(), Code::InvalidArgument);
        assert_eq!(status_of(503, &Value::Null).code(), Code::Unavailable);
        assert_eq!(status_of(500, &Value::Null).code(), Code::Internal);
    }
}
