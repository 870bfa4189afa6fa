//! Instant credentials: a create call that waits for its outcome.
//!
//! A request an auto-approve rule (or, in demo mode, the seed's
//! `simulateApproval`) accepts is granted by the instant workflow
//! (`state-machine/instant.asl.json`: validate, grant, record GRANTED),
//! run synchronously — Step Functions' `StartSyncExecution` on an Express
//! machine, `jit-local`'s engine in process — and *then* the Standard
//! workflow is started with the request id as always: its Validate finds
//! the request GRANTED and goes straight to RecordGranted, the Wait and the
//! Revoke, so the expiry happens exactly once, in the one durable
//! execution named after the request. The instant run is only a faster
//! road to the same records; if it fails or is slow, the Standard
//! workflow takes the request from wherever it is (every step is
//! idempotent).
//!
//! Credentials are vended here, by the API, after the run, exactly as
//! `GET /requests/{id}/credentials` vends them: no workflow ever carries
//! them, so no execution's input, output, history or log can hold them.
//!
//! This module does no waiting of its own (the core has no timer): the
//! front door polls [`Broker::get`] until [`Broker::settled`] for a
//! request that needs a person.

use std::time::Duration;

use crate::error::ServiceError;
use crate::identity::Caller;
use crate::lifecycle::Status;
use crate::ports::{InstantRun, IssuedCredentials};
use crate::request::{AccessRequest, GrantTarget};
use crate::service::{Broker, NewRequest};

/// The longest a create call may wait (`Prefer: wait=N`, N ≤ this; `"wait":
/// true` means this). API Gateway ends an integration at 29 s; 25 leaves
/// room for the credentials call after the wait.
pub const MAX_WAIT_SECS: u64 = 25;

/// What a waiting create produced.
#[derive(Debug)]
pub struct Created {
    pub request: AccessRequest,
    /// `false`: an idempotent replay of an earlier create.
    pub created: bool,
    /// Whether the instant workflow ran (and how it ended), for logs and
    /// tests; `None` when the request needed a person or was a replay.
    pub instant: Option<InstantRun>,
}

impl Broker {
    /// Creates a request like [`Broker::create`]; when a rule approves it,
    /// runs the instant workflow (bounded by `wait`) before starting the
    /// Standard workflow, so the request answered is usually GRANTED.
    pub async fn create_instant(
        &self,
        caller: &Caller,
        req: NewRequest,
        wait: Duration,
    ) -> Result<Created, ServiceError> {
        let (request, created) = self.record(caller, req).await?;
        if !created {
            return Ok(Created {
                request,
                created,
                instant: None,
            });
        }
        let ent = self
            .catalog
            .get(&request.entitlement)
            .ok_or_else(|| ServiceError::Internal {
                detail: format!(
                    "entitlement {} vanished from the catalog",
                    request.entitlement
                ),
            })?;
        let input = self.workflow_input(&request, ent);
        let instant = if input.auto_approve {
            let run = match self.workflow.run_instant(&input, wait).await {
                Ok(run) => run,
                Err(e) => {
                    // The Standard workflow below grants it all the same.
                    tracing::warn!(request_id = %request.request_id, error = %e, "instant workflow could not run; the standard workflow takes over");
                    InstantRun::Failed {
                        error: "Backend".into(),
                        cause: e.to_string(),
                    }
                }
            };
            match &run {
                InstantRun::Succeeded(_) => {
                    tracing::info!(request_id = %request.request_id, "instant workflow ended")
                }
                InstantRun::Failed { error, .. } => {
                    tracing::warn!(request_id = %request.request_id, error = %error, "instant workflow failed; the standard workflow takes over")
                }
                InstantRun::TimedOut => {
                    tracing::warn!(request_id = %request.request_id, "instant workflow still running at the wait's end")
                }
                InstantRun::Unsupported => {}
            }
            Some(run)
        } else {
            None
        };
        let current = self
            .store
            .get(&request.request_id)
            .await?
            .unwrap_or(request);
        if current.status == Status::Requested {
            // Nothing ran yet: a failed start is recorded FAILED, as without
            // waiting.
            self.start_standard(&current).await?;
        } else if let Err(e) = self.workflow.start(&input).await {
            // The instant run moved the request on (it may be GRANTED): it is
            // not failed for this. The reconcile pass starts the missing
            // Standard workflow, which owns the expiry; the IAM reconciler
            // ends the grant at `expiresAt` even before that.
            tracing::error!(request_id = %current.request_id, error = %e, "could not start the standard workflow after the instant one; the reconcile pass will");
        }
        Ok(Created {
            request: current,
            created,
            instant,
        })
    }

    /// Whether a waiting create may stop waiting: the request is granted or
    /// ended (denied, cancelled, failed, timed out…). Pending and APPROVED
    /// (being granted) are not.
    pub fn settled(&self, r: &AccessRequest) -> bool {
        let status = r.effective_status(self.clock.now());
        !status.is_pending() && status != Status::Approved
    }

    /// The credentials a waiting create answers with: for a GRANTED
    /// assume-role request, to its requester signed in as themselves —
    /// or, in demo mode only, to the trusted caller that created it (the
    /// seed's `/request-access` returned them to its caller). `None` for
    /// anything else (attach mode has no credentials to vend; someone
    /// else asks `GET /requests/{id}/credentials` themselves).
    pub async fn credentials_on_create(
        &self,
        caller: &Caller,
        r: &AccessRequest,
    ) -> Result<Option<IssuedCredentials>, ServiceError> {
        if r.effective_status(self.clock.now()) != Status::Granted
            || !matches!(r.target, GrantTarget::AssumeRole { .. })
            || self.grants.is_none()
        {
            return Ok(None);
        }
        let actor = match (&caller.identity, caller.through()) {
            (Some(me), _) if me.principal == r.requester.principal => me.principal.to_string(),
            (None, Some(_)) if self.settings.demo_mode => caller.actor(&r.requester.principal),
            _ => return Ok(None),
        };
        self.vend_credentials(r, actor).await.map(Some)
    }
}
