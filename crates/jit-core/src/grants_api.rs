//! The grant endpoints' use cases: credential vending, console sign-in,
//! early revoke and extension.
//!
//! Credentials are handed to the requester only, never stored, never
//! logged: each issue appends an audit event naming the access key id and
//! the expiry, nothing more. See `revocation` for how an early revoke cuts
//! sessions already handed out, `attachments` for overlapping attach-policy
//! grants, and `extension` for how extensions are decided.

use crate::attachments::{self, AttachmentKey, SettleError};
use crate::catalog::Entitlement;
use crate::duration::{DurationInput, GrantDuration};
use crate::error::ServiceError;
use crate::extension::{Extension, ExtensionStatus, MIN_EXTENSION_SECS};
use crate::grant_ports::GrantPorts;
use crate::identity::Caller;
use crate::ids::{Principal, RequestId, RoleArn};
use crate::inline_grants::{self, InlineGrant};
use crate::lifecycle::Status;
use crate::ports::{AssumeRoleSpec, GrantError, IssuedCredentials, Secret, StoreError};
use crate::request::{
    AccessRequest, AuditAction, AuditEvent, Change, Decision, GrantTarget, Timestamp, Verdict,
};
use crate::revocation::{self, RevocationError, SessionDeny};
use crate::service::{Broker, MAX_JUSTIFICATION_CHARS};
use crate::session_policy;
use crate::tasks::{session_name, source_identity};

/// STS's shortest session.
pub const MIN_SESSION_SECS: i64 = 900;

/// `DurationSeconds` for a credential issue with `left` seconds of window:
/// min(left, cap), but never under STS's 900-second minimum. Sessions that
/// would outlive the window stop at its end anyway: their session policy
/// denies everything after it (`session_policy::bounded`).
pub fn credential_duration(left: i64, cap: u32) -> u32 {
    left.min(cap as i64).max(MIN_SESSION_SECS) as u32
}

/// A console sign-in URL and when the session behind it ends.
pub struct ConsoleAccess {
    pub url: Secret,
    pub expires_at: Timestamp,
    /// A permission-set grant: the access portal's URL for each account
    /// (`url` is the first). Not a credential: the person signs in to the
    /// portal as themselves.
    pub portal: Vec<(crate::ids::AccountId, String)>,
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The request's session policy bounded by its window's end. A policy
/// that cannot be bounded (over STS's size limit with the bound) is the
/// deployment's to fix: 502 with the reason.
fn bounded_policy(r: &AccessRequest, window_end: Timestamp) -> Result<String, ServiceError> {
    session_policy::bounded(r.session_policy.as_deref(), window_end).map_err(|e| {
        tracing::warn!(request_id = %r.request_id, error = %e, "session policy cannot be passed to STS");
        ServiceError::Upstream {
            code: "session_policy_invalid",
            message: e.to_string(),
        }
    })
}

fn conflict(code: &'static str, message: impl Into<String>, current: Status) -> ServiceError {
    ServiceError::Conflict {
        code,
        field: None,
        message: message.into(),
        current: Some(current),
    }
}

fn check_reason(reason: Option<String>, required: &str) -> Result<Option<String>, ServiceError> {
    let reason = reason.filter(|r| !r.trim().is_empty());
    if let Some(r) = &reason {
        if r.chars().count() > MAX_JUSTIFICATION_CHARS {
            return Err(ServiceError::invalid(
                "reason",
                format!("must be at most {MAX_JUSTIFICATION_CHARS} characters"),
            ));
        }
        if r.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ServiceError::invalid(
                "reason",
                "must not contain control characters",
            ));
        }
    } else if !required.is_empty() {
        return Err(ServiceError::invalid("reason", required.to_string()));
    }
    Ok(reason)
}

/// A grant failure as the API shows it: named, with the fix, and without
/// AWS's raw text (which is logged for the operators).
fn grant_failure(e: &GrantError, role: Option<&RoleArn>) -> ServiceError {
    tracing::warn!(error = %e, "grant call failed");
    let role = role.map(|r| r.to_string()).unwrap_or_default();
    let upstream = |code, message: String| ServiceError::Upstream { code, message };
    match e {
        GrantError::Transient(_) => ServiceError::Unavailable {
            code: "aws_unavailable",
            message: "AWS throttled or did not answer the call; retry in a moment".into(),
        },
        GrantError::RoleMissing(_) => upstream(
            "role_missing",
            format!(
                "the role {role} does not exist: create it, or correct the entitlement's role_arn (`jit catalog check` lists such problems)"
            ),
        ),
        GrantError::TrustRefused(_) => upstream(
            "trust_refused",
            format!(
                "AWS refused to let the broker assume {role}: the role's trust policy must allow the broker's role sts:AssumeRole, sts:SetSourceIdentity and sts:TagSession (`jit catalog check` shows what is missing)"
            ),
        ),
        GrantError::DurationTooLong(_) => upstream(
            "duration_too_long",
            format!(
                "AWS refused the session length for {role}: raise the role's MaxSessionDuration to at least 3600 seconds"
            ),
        ),
        GrantError::PolicyMissing(_) => upstream(
            "policy_missing",
            "the entitlement's managed policy does not exist or is not attachable: correct its policy_name (exact case) or create the policy".into(),
        ),
        GrantError::PrincipalMissing(_) => upstream(
            "principal_missing",
            "your IAM user or role does not exist in the entitlement's account, so nothing can be attached to it".into(),
        ),
        GrantError::Other(_) => upstream(
            "aws_error",
            "AWS refused the call; the error is logged for the operators".into(),
        ),
    }
}

fn settle_failure(e: &SettleError) -> ServiceError {
    match e {
        SettleError::Store(s) => {
            tracing::warn!(error = %s, "store read while settling an attachment failed");
            ServiceError::Unavailable {
                code: "store_unavailable",
                message: "the request store did not answer; retry in a moment".into(),
            }
        }
        SettleError::Grant(g) => grant_failure(g, None),
        SettleError::Unsettled(m) => ServiceError::Unavailable {
            code: "conflict_retry",
            message: m.clone(),
        },
    }
}

impl Broker {
    fn grant_ports(&self) -> Result<&GrantPorts, ServiceError> {
        self.grants
            .as_deref()
            .ok_or_else(|| ServiceError::Unavailable {
                code: "grants_unavailable",
                message: "this deployment has no grant adapters configured".into(),
            })
    }

    /// The request, for its requester signed in as themselves; anyone else
    /// who may see it gets a 403, anyone who may not a 404.
    async fn requesters_own(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<AccessRequest, ServiceError> {
        let who = self.acting(caller, None).await?;
        let r = self.load_visible(caller, who.as_ref(), id).await?;
        match &caller.identity {
            Some(me) if me.principal == r.requester.principal => Ok(r),
            _ => Err(ServiceError::forbidden(
                "not_requester",
                None,
                "only the requester, signed in as themselves, gets access from a request",
            )),
        }
    }

    /// The role of a request that is live now.
    fn live_role(&self, r: &AccessRequest) -> Result<RoleArn, ServiceError> {
        let status = r.effective_status(self.clock.now());
        let role = match &r.target {
            GrantTarget::AssumeRole { role_arn } => role_arn.clone(),
            GrantTarget::AttachPolicy { policy_name } => {
                return Err(conflict(
                    "not_assume_role",
                    format!(
                        "`{}` attaches the managed policy {policy_name} to your own IAM identity; there are no credentials to vend: use your own credentials, which carry the policy while the grant lasts",
                        r.entitlement
                    ),
                    status,
                ));
            }
            GrantTarget::PermissionSet { permission_set, .. } => {
                return Err(conflict(
                    "not_assume_role",
                    format!(
                        "`{}` assigns the IAM Identity Center permission set {permission_set}; there are no credentials to vend: sign in through the AWS access portal (`GET /requests/{}/console` gives its URL) or `aws sso login`",
                        r.entitlement, r.request_id
                    ),
                    status,
                ));
            }
        };
        match status {
            Status::Granted => Ok(role),
            Status::Expired => Err(conflict(
                "invalid_state",
                format!(
                    "the request is EXPIRED: its access window ended at {}",
                    r.expires_at.map(rfc3339).unwrap_or_default()
                ),
                status,
            )),
            s if s.is_pending() => Err(conflict(
                "invalid_state",
                format!("the request is {s}; access is available once it is GRANTED"),
                s,
            )),
            s => Err(conflict(
                "invalid_state",
                format!("the request is {s}; it grants no access any more"),
                s,
            )),
        }
    }

    /// One `AssumeRole` for the requester of a live request, clipped to its
    /// window, handed out only if the request is still live after STS
    /// answered (see `revocation` for why that re-read matters).
    async fn issue(
        &self,
        ports: &GrantPorts,
        r: &AccessRequest,
        role: RoleArn,
    ) -> Result<IssuedCredentials, ServiceError> {
        let expires_at = r.expires_at.ok_or_else(|| ServiceError::Internal {
            detail: format!("GRANTED request {} has no expiresAt", r.request_id),
        })?;
        let left = (expires_at - self.clock.now()).num_seconds();
        let duration = credential_duration(left, ports.session_cap_secs);
        let session_policy = bounded_policy(r, expires_at)?;
        let spec = AssumeRoleSpec {
            role_arn: role.clone(),
            session_name: session_name(r),
            source_identity: source_identity(&r.requester.principal),
            duration_secs: duration,
            session_policy: Some(session_policy),
            tags: vec![("jit:request-id".into(), r.request_id.to_string())],
        };
        let creds = match ports.issuer.assume_role(&spec).await {
            Ok(c) => c,
            Err(GrantError::TrustRefused(m)) => {
                // STS answers AccessDenied for a missing role too: ask IAM.
                let missing = match &ports.inspector {
                    Some(i) => matches!(i.role(&role).await, Ok(None)),
                    None => false,
                };
                let e = if missing {
                    GrantError::RoleMissing(m)
                } else {
                    GrantError::TrustRefused(m)
                };
                return Err(grant_failure(&e, Some(&role)));
            }
            Err(e) => return Err(grant_failure(&e, Some(&role))),
        };
        let again = self
            .store
            .get(&r.request_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(r.request_id.as_str()))?;
        let now = self.clock.now();
        if again.effective_status(now) != Status::Granted || again.session_deny.is_some() {
            // Dropped unread: the request ended while STS answered.
            return Err(conflict(
                "invalid_state",
                format!(
                    "the request became {} while the credentials were issued; they were discarded",
                    again.effective_status(now)
                ),
                again.effective_status(now),
            ));
        }
        Ok(creds)
    }

    /// `GET /requests/{id}/credentials`: fresh role credentials for the
    /// requester of a live assume-role request.
    pub async fn credentials(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<IssuedCredentials, ServiceError> {
        self.grant_ports()?;
        let r = self.requesters_own(caller, id).await?;
        self.vend_credentials(&r, r.requester.principal.to_string())
            .await
    }

    /// Vends credentials for a live assume-role request whose requester
    /// (or, see `instant`, whose creating caller) was checked by the
    /// caller; `actor` is who the audit event names.
    pub(crate) async fn vend_credentials(
        &self,
        r: &AccessRequest,
        actor: String,
    ) -> Result<IssuedCredentials, ServiceError> {
        let ports = self.grant_ports()?;
        let role = self.live_role(r)?;
        let mut creds = self.issue(ports, r, role).await?;
        // STS's minimum session can outlast the window (the session policy
        // denies everything past it). The answer's `Expiration` is the
        // earlier of the two, so `credential_process` and the SDKs refresh
        // at the window's end: after an extension they get a session for
        // the new window instead of serving the denied one from a cache.
        if let Some(end) = r.expires_at
            && creds.expiration > end
        {
            creds.expiration = end;
        }
        let now = self.clock.now();
        let mut event = AuditEvent::new(
            &r.request_id,
            now,
            actor,
            AuditAction::CredentialsIssued,
            None,
            None,
            Some(format!(
                "credentials issued: access key id {}, valid {} s, until {}",
                creds.access_key_id,
                (creds.expiration - now).num_seconds().max(0),
                rfc3339(creds.expiration)
            )),
            "api",
        );
        // The key id as a field too: the usage sweep looks CloudTrail up by
        // it (`crate::usage`). Never the secret or the session token.
        event.access_key_id = Some(creds.access_key_id.clone());
        event.flag_for(r);
        // No audit event, no credentials: they are dropped unread.
        self.store.append_audit(&event).await?;
        tracing::info!(request_id = %r.request_id, access_key_id = %creds.access_key_id, "credentials issued");
        Ok(creds)
    }

    /// `GET /requests/{id}/console`: an AWS console sign-in URL for the
    /// requester of a live assume-role request.
    pub async fn console(&self, caller: &Caller, id: &str) -> Result<ConsoleAccess, ServiceError> {
        let r = self.requesters_own(caller, id).await?;
        if let GrantTarget::PermissionSet { .. } = &r.target {
            return self.portal(&r);
        }
        let ports = self.grant_ports()?;
        let role = self.live_role(&r)?;
        let creds = self.issue(ports, &r, role).await?;
        let url = ports
            .console
            .signin_url(&creds)
            .await
            .map_err(|e| grant_failure(&e, None))?;
        let now = self.clock.now();
        let mut event = AuditEvent::new(
            &r.request_id,
            now,
            r.requester.principal.to_string(),
            AuditAction::ConsoleSignin,
            None,
            None,
            Some(format!(
                "console sign-in URL issued: session access key id {}, until {}",
                creds.access_key_id,
                rfc3339(creds.expiration)
            )),
            "api",
        );
        event.access_key_id = Some(creds.access_key_id.clone());
        event.flag_for(&r);
        self.store.append_audit(&event).await?;
        tracing::info!(request_id = %r.request_id, access_key_id = %creds.access_key_id, "console sign-in issued");
        Ok(ConsoleAccess {
            url,
            expires_at: creds.expiration,
            portal: vec![],
        })
    }

    /// A live permission-set grant: the access portal's URL for each of its
    /// accounts (the portal signs the person in as themselves, with the
    /// permission set as the role). Nothing is issued, so nothing is audited.
    fn portal(&self, r: &AccessRequest) -> Result<ConsoleAccess, ServiceError> {
        let GrantTarget::PermissionSet {
            permission_set,
            accounts,
        } = &r.target
        else {
            unreachable!("checked by the caller");
        };
        let status = r.effective_status(self.clock.now());
        if status != Status::Granted {
            return Err(conflict(
                "invalid_state",
                format!(
                    "the request is {status}; the portal offers the permission set only while it is GRANTED"
                ),
                status,
            ));
        }
        let idc = self
            .catalog
            .identity_center()
            .ok_or_else(|| ServiceError::Internal {
                detail: "a permission-set request but the catalog has no identity_center".into(),
            })?;
        // The portal names a permission set by its name; an entry spelled
        // as an ARN opens the portal's start page instead.
        let portal: Vec<(crate::ids::AccountId, String)> = accounts
            .iter()
            .map(|a| {
                let url = if crate::identity_center::is_permission_set_arn(permission_set) {
                    idc.portal_url.clone()
                } else {
                    idc.console_url(a, permission_set)
                };
                (a.clone(), url)
            })
            .collect();
        let url = portal
            .first()
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| idc.portal_url.clone());
        Ok(ConsoleAccess {
            url: Secret::new(url),
            expires_at: r.expires_at.unwrap_or_else(|| self.clock.now()),
            portal,
        })
    }

    /// Who may revoke: the requester, an approver of the entitlement, or a
    /// member of the catalog's `admin_groups`. Others who may see the
    /// request get a 403; those who may not, a 404.
    async fn load_revocable(
        &self,
        caller: &Caller,
        id: &str,
        who: &(Principal, Vec<String>),
    ) -> Result<AccessRequest, ServiceError> {
        let rid = RequestId::parse(id).map_err(|_| ServiceError::not_found(id))?;
        let r = self
            .store
            .get(&rid)
            .await?
            .ok_or_else(|| ServiceError::not_found(id))?;
        let approver = self
            .catalog
            .get(&r.entitlement)
            .is_some_and(|e| self.catalog.is_approver(e, &who.0, &who.1));
        if who.0 == r.requester.principal || approver || self.catalog.is_admin(&who.1) {
            return Ok(r);
        }
        if caller.trusted_as.is_some() {
            return Err(ServiceError::forbidden(
                "not_revoker",
                None,
                "only the requester, an approver of the entitlement or an admin may revoke",
            ));
        }
        Err(ServiceError::not_found(id))
    }

    /// `POST /requests/{id}/revoke`: ends a live grant now. Attach mode
    /// detaches (unless another live grant covers the same attachment);
    /// assume-role mode denies the requester's sessions issued so far on the
    /// role. Revoking a REVOKED request again re-applies what is missing.
    pub async fn revoke(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let reason = check_reason(reason, "is required: say why the access is revoked")?;
        let ports = self.grant_ports()?;
        let who = self
            .deciding(caller, on_behalf_of, "revoke")
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    "requester",
                    "is required when a trusted caller revokes for someone",
                )
            })?;
        let mut r = self.load_revocable(caller, id, &who).await?;
        let mut attempts = 0;
        let (next, attached) = loop {
            attempts += 1;
            if r.status == Status::Revoked {
                // A retry: re-apply whatever did not happen the first time.
                break (r, None);
            }
            let status = r.effective_status(self.clock.now());
            if status != Status::Granted {
                return Err(ServiceError::conflict_status(status, "revoked"));
            }
            let key = AttachmentKey::of(&r)
                .transpose()
                .map_err(|e| ServiceError::Internal {
                    detail: format!("attach-policy principal: {e}"),
                })?;
            let attached = match &key {
                Some(k) => Some(
                    attachments::detach_unless_covered(
                        self.store.as_ref(),
                        &ports.iam,
                        self.clock.as_ref(),
                        k,
                        &r.request_id,
                    )
                    .await
                    .map_err(|e| settle_failure(&e))?,
                ),
                None => None,
            };
            if matches!(r.target, GrantTarget::PermissionSet { .. }) {
                self.revoke_assignments(ports, &r)
                    .await
                    .map_err(|e| settle_failure(&e))?;
            }
            // A scoped attach grant: its own `jit-<id>` goes first.
            if let Some(inline) = InlineGrant::of(&r) {
                let inline = inline.map_err(|e| ServiceError::Internal {
                    detail: format!("attach-policy principal: {e}"),
                })?;
                inline
                    .remove(&ports.iam)
                    .await
                    .map_err(|e| settle_failure(&SettleError::Grant(e)))?;
            }
            let now = self.clock.now();
            let change = Change {
                actor: caller.actor(&who.0),
                at: now,
                reason: reason.clone(),
                source: "api",
            };
            let (mut next, event) = r.transition(Status::Revoked, &change)?;
            if let GrantTarget::AssumeRole { role_arn } = &r.target {
                next.session_deny = Some(SessionDeny::new(
                    &r.request_id,
                    role_arn.clone(),
                    source_identity(&r.requester.principal),
                    now,
                    ports.session_cap_secs,
                ));
            }
            match self.store.transition(&r, &next, &event).await {
                Ok(()) => break (next, attached),
                Err(StoreError::Conflict { .. }) if attempts < 3 => {
                    r = self
                        .store
                        .get(&r.request_id)
                        .await?
                        .ok_or_else(|| ServiceError::not_found(id))?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let incomplete = |what: &str| ServiceError::Unavailable {
            code: "revoke_incomplete",
            message: format!(
                "the request is recorded REVOKED, but {what}; send the same revoke again to finish it"
            ),
        };
        if let Some(Ok(inline)) = InlineGrant::of(&next)
            && let Err(e) = inline_grants::settle(
                self.store.as_ref(),
                &ports.iam,
                self.clock.as_ref(),
                &inline,
                None,
            )
            .await
        {
            tracing::warn!(request_id = %next.request_id, error = %e, "revoke: deleting the inline policy failed");
            return Err(incomplete("the inline policy could not be deleted yet"));
        }
        if let Some(Ok(key)) = AttachmentKey::of(&next)
            && let Err(e) = attachments::settle(
                self.store.as_ref(),
                &ports.iam,
                self.clock.as_ref(),
                &key,
                attached,
                &next.request_id,
            )
            .await
        {
            tracing::warn!(request_id = %next.request_id, error = %e, "revoke: detaching failed");
            return Err(incomplete("the policy could not be detached yet"));
        }
        if matches!(next.target, GrantTarget::PermissionSet { .. })
            && let Err(e) = self.revoke_assignments(ports, &next).await
        {
            tracing::warn!(request_id = %next.request_id, error = %e, "revoke: deleting assignments failed");
            return Err(incomplete(
                "the account assignments could not be deleted yet",
            ));
        }
        let next = match revocation::place(
            self.store.as_ref(),
            &ports.iam,
            self.clock.as_ref(),
            &next,
        )
        .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(request_id = %next.request_id, error = %e, "revoke: placing the session deny failed");
                return Err(match e {
                    RevocationError::Grant(GrantError::Transient(_))
                    | RevocationError::Store(_) => {
                        incomplete("the deny for sessions already issued is not on the role yet")
                    }
                    RevocationError::Grant(g) => grant_failure(&g, None),
                });
            }
        };
        // The execution is not stopped (it might be in a step that grants):
        // its Wait ends at `expiresAt`, and the Revoke step finds the request
        // REVOKED, settles what is left and ends quietly.
        tracing::info!(request_id = %next.request_id, by = %who.0, "revoked");
        Ok(next)
    }

    /// A permission-set grant being revoked: each assignment deleted unless
    /// another live grant needs it (then settled, so a grant recorded
    /// meanwhile keeps its own). Where this component has no Identity
    /// Center adapter (the deployed `access` function), nothing is called
    /// here: the request is recorded REVOKED and the reconciler in the
    /// `expire` function's one-minute sweep deletes what no live grant
    /// needs.
    async fn revoke_assignments(
        &self,
        ports: &GrantPorts,
        r: &AccessRequest,
    ) -> Result<(), SettleError> {
        let Some(manager) = ports.iam.assignments() else {
            return Ok(());
        };
        let list = match crate::assignments::of(manager, r).await {
            None => return Ok(()),
            Some(Ok(list)) => list,
            Some(Err(GrantError::PrincipalMissing(_) | GrantError::PolicyMissing(_))) => {
                return Ok(());
            }
            Some(Err(e)) => return Err(e.into()),
        };
        for a in &list {
            if r.status == Status::Revoked {
                crate::assignments::settle(
                    self.store.as_ref(),
                    &ports.iam,
                    self.clock.as_ref(),
                    a,
                    None,
                    &r.request_id,
                )
                .await?;
            } else {
                crate::assignments::unassign_unless_covered(
                    self.store.as_ref(),
                    &ports.iam,
                    self.clock.as_ref(),
                    a,
                    &r.request_id,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// `POST /requests/{id}/extend`: asks for `duration` more on a live
    /// grant. Applied at once when an auto-approve rule accepts the new
    /// total; otherwise PENDING for the entitlement's approvers.
    pub async fn extend(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        duration: Option<DurationInput>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let who = self.acting(caller, on_behalf_of).await?.ok_or_else(|| {
            ServiceError::invalid(
                "requester",
                "is required when a trusted caller extends for someone",
            )
        })?;
        let r = self.load_visible(caller, Some(&who), id).await?;
        if who.0 != r.requester.principal {
            return Err(ServiceError::forbidden(
                "not_requester",
                None,
                "only the requester can ask for more time",
            ));
        }
        let reason =
            check_reason(reason, "is required: say why you need more time")?.unwrap_or_default();
        let secs = duration
            .ok_or_else(|| {
                ServiceError::invalid("duration", "is required: how much longer, e.g. \"30m\"")
            })?
            .to_secs()
            .map_err(|e| ServiceError::invalid("duration", e.0))?;
        let ent = self.entitlement_of(&r)?;
        if !self.catalog.is_eligible(ent, &who.1) {
            return Err(ServiceError::forbidden(
                "not_eligible",
                None,
                format!("you are no longer in a group eligible for `{}`", ent.name),
            ));
        }
        let now = self.clock.now();
        let status = r.effective_status(now);
        if status != Status::Granted {
            return Err(ServiceError::conflict_status(status, "extended"));
        }
        if r.extensions
            .iter()
            .any(|x| x.status == ExtensionStatus::Pending)
        {
            return Err(conflict(
                "extension_pending",
                "an extension already waits for a decision",
                status,
            ));
        }
        let (granted_at, expires_at) = window(&r)?;
        let used = (expires_at - granted_at).num_seconds().max(0) as u64;
        let remaining = (ent.max_duration.secs() as u64).saturating_sub(used);
        if secs < MIN_EXTENSION_SECS || secs > remaining {
            let allowance = if remaining < MIN_EXTENSION_SECS {
                format!(
                    "`{}` allows at most {} in all and this grant already has {}: no allowance is left",
                    ent.name,
                    ent.max_duration,
                    human(used)
                )
            } else {
                format!(
                    "`{}` allows at most {} in all and this grant already has {}: ask for {} to {} ({}s-{}s)",
                    ent.name,
                    ent.max_duration,
                    human(used),
                    human(MIN_EXTENSION_SECS),
                    human(remaining),
                    MIN_EXTENSION_SECS,
                    remaining
                )
            };
            return Err(ServiceError::invalid("duration", allowance));
        }
        let total = GrantDuration::from_secs(used + secs)
            .map_err(|e| ServiceError::invalid("duration", e.0))?;
        let auto = self.catalog.auto_approves(ent, &who.1, total);
        let new_expiry = expires_at + chrono::Duration::seconds(secs as i64);
        let mut next = r.clone();
        next.extensions.push(Extension {
            requested_by: who.0.clone(),
            requested_at: now,
            duration_secs: secs as u32,
            reason: reason.clone(),
            status: if auto {
                ExtensionStatus::Approved
            } else {
                ExtensionStatus::Pending
            },
            auto_approved: auto,
            decisions: vec![],
            decided_at: auto.then_some(now),
            previous_expires_at: auto.then_some(expires_at),
            new_expires_at: auto.then_some(new_expiry),
            notice: None,
        });
        if auto {
            next.expires_at = Some(new_expiry);
        }
        next.version += 1;
        next.updated_at = now;
        let text = if auto {
            format!(
                "extension of {} approved by an auto-approve rule: now expires at {}; reason: {reason}",
                human(secs),
                rfc3339(new_expiry)
            )
        } else {
            format!(
                "extension of {} asked, waiting for an approver; reason: {reason}",
                human(secs)
            )
        };
        let event = AuditEvent::new(
            &r.request_id,
            now,
            caller.actor(&who.0),
            AuditAction::Extension,
            None,
            None,
            Some(text),
            "api",
        );
        self.store
            .transition(&r, &next, &event)
            .await
            .map_err(changed_meanwhile)?;
        tracing::info!(request_id = %r.request_id, secs, auto, "extension asked");
        Ok(next)
    }

    /// `POST /requests/{id}/extend/approve` and `/extend/deny`: an approver
    /// of the entitlement (never the requester) decides the pending
    /// extension, with the entitlement's quorum.
    pub async fn decide_extension(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        approve: bool,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let reason = check_reason(
            reason,
            if approve {
                ""
            } else {
                "is required: tell the requester why"
            },
        )?;
        let who = self
            .deciding(caller, on_behalf_of, "decide extensions")
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    "requester",
                    "is required when a trusted caller decides for an approver",
                )
            })?;
        let r = self.load_visible(caller, Some(&who), id).await?;
        let actor = caller.actor(&who.0);
        let through = caller.through().map(str::to_string);
        self.decide_extension_as(r, who, actor, "api", through, approve, reason, None)
            .await
    }

    /// Decides `r`'s pending extension as `who` (the rules of
    /// [`Broker::decide_extension`]); `link`: the signed link's nonce and
    /// the extension index it is bound to, consumed in the same write.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn decide_extension_as(
        &self,
        r: AccessRequest,
        who: (crate::ids::Principal, Vec<String>),
        actor: String,
        via: &str,
        through: Option<String>,
        approve: bool,
        reason: Option<String>,
        link: Option<(&str, usize)>,
    ) -> Result<AccessRequest, ServiceError> {
        let ent = self.entitlement_of(&r)?;
        if who.0 == r.requester.principal {
            return Err(ServiceError::forbidden(
                "self_approval",
                None,
                "nobody decides their own extension",
            ));
        }
        if !self.catalog.is_approver(ent, &who.0, &who.1) {
            return Err(ServiceError::forbidden(
                "not_approver",
                None,
                format!("you are not an approver of `{}`", ent.name),
            ));
        }
        let now = self.clock.now();
        let status = r.effective_status(now);
        let Some(index) = r
            .extensions
            .iter()
            .rposition(|x| x.status == ExtensionStatus::Pending)
        else {
            return Err(conflict(
                "already_decided",
                "no extension of this request waits for a decision",
                status,
            ));
        };
        if status != Status::Granted {
            return Err(conflict(
                "invalid_state",
                format!("the request is {status}; its extension can no longer be decided"),
                status,
            ));
        }
        if let Some((nonce, bound)) = link {
            if r.used_link_nonces.iter().any(|n| n == nonce) {
                return Err(conflict(
                    "link_used",
                    "this approval link was already used; each link works once",
                    status,
                ));
            }
            if bound != index {
                return Err(conflict(
                    "already_decided",
                    "this link is for an earlier extension, which no longer waits for a decision",
                    status,
                ));
            }
        }
        let pending = &r.extensions[index];
        if pending.decisions.iter().any(|d| d.approver == who.0) {
            return Err(conflict(
                "already_decided",
                "you already approved this extension; it waits for another approver",
                status,
            ));
        }
        let mut next = r.clone();
        let ext = &mut next.extensions[index];
        ext.decisions.push(Decision {
            approver: who.0.clone(),
            verdict: if approve {
                Verdict::Approve
            } else {
                Verdict::Deny
            },
            at: now,
            reason: reason.clone(),
            groups: who.1.clone(),
            via: Some(via.into()),
            trusted_caller: through,
        });
        let approvals = ext
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
            .count() as u32;
        let required = ent.approvers.required_approvals;
        let missing = crate::decisions::quorum_missing(&ext.decisions, &ent.approvers);
        let text = if !approve {
            ext.status = ExtensionStatus::Denied;
            ext.decided_at = Some(now);
            format!(
                "extension of {} denied: {}",
                human(ext.duration_secs as u64),
                reason.clone().unwrap_or_default()
            )
        } else if missing.is_none() {
            let (granted_at, expires_at) = window(&r)?;
            let total =
                (expires_at - granted_at).num_seconds().max(0) as u64 + ext.duration_secs as u64;
            if total > ent.max_duration.secs() as u64 {
                return Err(conflict(
                    "invalid_state",
                    format!(
                        "approving would make the grant {} in all; `{}` allows at most {}",
                        human(total),
                        ent.name,
                        ent.max_duration
                    ),
                    status,
                ));
            }
            let new_expiry = expires_at + chrono::Duration::seconds(ext.duration_secs as i64);
            ext.status = ExtensionStatus::Approved;
            ext.decided_at = Some(now);
            ext.previous_expires_at = Some(expires_at);
            ext.new_expires_at = Some(new_expiry);
            next.expires_at = Some(new_expiry);
            format!(
                "extension approved ({approvals} of {required}): now expires at {}",
                rfc3339(new_expiry)
            )
        } else {
            match missing {
                Some((_, groups)) if !groups.is_empty() => format!(
                    "extension approved ({approvals} of {required}); still needs one from: {}",
                    groups.join(", ")
                ),
                _ => format!("extension approved ({approvals} of {required})"),
            }
        };
        if let Some((nonce, _)) = link {
            next.used_link_nonces.push(nonce.to_string());
        }
        next.version += 1;
        next.updated_at = now;
        let event = AuditEvent::new(
            &r.request_id,
            now,
            actor,
            AuditAction::Extension,
            None,
            None,
            Some(match &reason {
                Some(why) if approve => format!("{text}; {why}"),
                _ => text,
            }),
            "api",
        );
        self.store
            .transition(&r, &next, &event)
            .await
            .map_err(changed_meanwhile)?;
        tracing::info!(request_id = %r.request_id, approver = %who.0, approve, "extension decided");
        Ok(next)
    }

    fn entitlement_of(&self, r: &AccessRequest) -> Result<&Entitlement, ServiceError> {
        self.catalog.get(&r.entitlement).ok_or_else(|| {
            conflict(
                "invalid_state",
                format!(
                    "the entitlement `{}` is no longer in the catalog",
                    r.entitlement
                ),
                r.status,
            )
        })
    }
}

fn window(r: &AccessRequest) -> Result<(Timestamp, Timestamp), ServiceError> {
    match (r.granted_at, r.expires_at) {
        (Some(g), Some(e)) => Ok((g, e)),
        _ => Err(ServiceError::Internal {
            detail: format!("GRANTED request {} has no window", r.request_id),
        }),
    }
}

fn human(secs: u64) -> String {
    match GrantDuration::from_secs(secs) {
        Ok(d) => d.to_string(),
        Err(_) => format!("{secs}s"),
    }
}

fn changed_meanwhile(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict { current } => ServiceError::Conflict {
            code: "conflict",
            field: None,
            message: match current {
                Some(s) => format!("the request changed meanwhile and is now {s}; retry"),
                None => "the request changed meanwhile; retry".into(),
            },
            current,
        },
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_clipped_to_the_window_and_the_chained_cap_but_never_under_stss_minimum() {
        // (seconds left in the window, DurationSeconds)
        let cases = [
            (4 * 3600, 3600),
            (3601, 3600),
            (3600, 3600),
            (1800, 1800),
            (901, 901),
            (900, 900),
            (899, 900),
            (60, 900),
            (1, 900),
            (0, 900),
        ];
        for (left, want) in cases {
            assert_eq!(credential_duration(left, 3600), want, "{left}");
        }
    }
}
