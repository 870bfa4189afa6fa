//! Use cases: what the API does, as plain async functions over the ports.
//!
//! Both front doors (the Lambda and `jit-local`) call these; nothing here
//! knows about HTTP or AWS.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, Entitlement};
use crate::duration::{DurationInput, GrantDuration};
use crate::error::ServiceError;
use crate::identity::Caller;
use crate::ids::{AccountId, IdempotencyKey, Principal, RequestId};
use crate::lifecycle::Status;
use crate::ports::{
    Clock, CreateOutcome, Page, PageRequest, RequestStore, StoreError, Workflow, WorkflowInput,
};
use crate::request::{
    AccessRequest, AuditAction, AuditEvent, AuthSource, Change, GrantTarget, Requester,
};

/// Longest justification accepted; enough for an incident summary and link.
pub const MAX_JUSTIFICATION_CHARS: usize = 1024;

/// Deployment switches the use cases depend on.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Honour the seed's `simulateApproval` (demo deployments and `jit-local`).
    pub demo_mode: bool,
}

/// The broker's dependencies, built once at start by each front door.
#[derive(Clone)]
pub struct Broker {
    pub store: Arc<dyn RequestStore>,
    pub workflow: Arc<dyn Workflow>,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// Credential vending, console sign-in, revoke and the account checks
    /// behind them; `None` where a front door has none configured (the
    /// grant endpoints then answer 503 `grants_unavailable`).
    pub grants: Option<Arc<crate::grant_ports::GrantPorts>>,
    /// Turns a request's `scope` into a session policy (checked at create,
    /// shown by `POST /policies/preview`); `None` where the front door has
    /// none (a scoped request then answers 503 `policy_generation_unavailable`).
    pub policy: Option<Arc<dyn crate::policy::PolicyGenerator>>,
}

/// A create call, from either body form, before any checks.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    /// The catalog name asked for.
    pub entitlement: Option<String>,
    /// Which body field named it (`entitlement`, or the seed's `role`), for errors.
    pub entitlement_field: &'static str,
    /// The seed's `roleArn`: accepted only when it is the catalogued role.
    pub role_arn: Option<String>,
    pub account: Option<String>,
    /// A permission-set entitlement: the accounts asked for, a subset of
    /// the entitlement's (`None`: all of them).
    pub accounts: Option<Vec<String>>,
    pub duration: Option<DurationInput>,
    pub justification: Option<String>,
    /// Whether `justification` must be given (the canonical API) or may be
    /// absent (the seed's `/request-access`).
    pub justification_required: bool,
    /// The body's `requester`, honoured only as the identity rules allow.
    pub requester: Option<String>,
    pub idempotency_key: Option<String>,
    pub simulate_approval: bool,
    /// What the requester says they need (parsed `scope`).
    pub scope: Option<crate::policy::Scope>,
    /// `"breakGlass": true`: the requester approves their own request (a
    /// `break_glass: true` entitlement only; see `break_glass`).
    pub break_glass: bool,
}

/// What a list call asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Requests in this status the caller may decide (approver view).
    pub status: Option<Status>,
    pub page: PageRequest,
}

impl Broker {
    fn change(&self, actor: String, reason: Option<String>) -> Change {
        Change {
            actor,
            at: self.clock.now(),
            reason,
            source: "api",
        }
    }

    /// Who the request is for, under the identity rules: the authenticated
    /// person, or whoever a trusted caller names.
    async fn resolve_requester(
        &self,
        caller: &Caller,
        body: Option<&str>,
    ) -> Result<Requester, ServiceError> {
        let claimed = match body {
            None => None,
            Some(s) => Some(
                Principal::parse(s.to_string())
                    .map_err(|e| ServiceError::invalid("requester", e.0))?,
            ),
        };
        match (&caller.identity, claimed) {
            (Some(id), None) => {
                self.requester_from(id.principal.clone(), id.auth, &id.groups, None)
                    .await
            }
            (Some(id), Some(p)) if id.principal == p => {
                self.requester_from(p, id.auth, &id.groups, None).await
            }
            (_, Some(p)) if caller.trusted_as.is_some() => {
                self.requester_from(p, AuthSource::TrustedCaller, &[], caller.trusted_as.clone())
                    .await
            }
            (Some(_), Some(_)) => Err(ServiceError::forbidden(
                "identity_mismatch",
                Some("requester"),
                "does not match the authenticated caller; only a trusted caller may request for someone else",
            )),
            (None, _) => Err(unauthenticated(caller)),
        }
    }

    async fn requester_from(
        &self,
        p: Principal,
        auth: AuthSource,
        groups: &[String],
        via: Option<String>,
    ) -> Result<Requester, ServiceError> {
        let groups = self.groups_of(&p, groups).await?;
        Ok(Requester {
            principal: p,
            authenticated_by: auth,
            groups,
            via,
        })
    }

    /// A person's groups for the rules: asserted, declared in the catalog,
    /// and Identity Store groups (`idc:<name>`, cached for a bounded time)
    /// when the catalog names any. An unreadable directory is a 503: rules
    /// are never judged on a partial picture.
    pub async fn groups_of(
        &self,
        p: &Principal,
        asserted: &[String],
    ) -> Result<Vec<String>, ServiceError> {
        self.catalog.resolve_groups(p, asserted).await.map_err(|e| {
            tracing::warn!(principal = %p, error = %e, "Identity Store groups could not be read");
            ServiceError::Unavailable {
                code: "directory_unavailable",
                message:
                    "the Identity Store groups the rules name could not be read; retry shortly"
                        .into(),
            }
        })
    }

    /// The person acting on an existing request: the authenticated one, or
    /// the one a trusted caller names.
    pub(crate) async fn acting(
        &self,
        caller: &Caller,
        on_behalf_of: Option<&str>,
    ) -> Result<Option<(Principal, Vec<String>)>, ServiceError> {
        if let Some(id) = &caller.identity {
            let groups = self.groups_of(&id.principal, &id.groups).await?;
            return Ok(Some((id.principal.clone(), groups)));
        }
        if caller.trusted_as.is_some() {
            return match on_behalf_of {
                Some(p) => {
                    let p = Principal::parse(p.to_string())
                        .map_err(|e| ServiceError::invalid("requester", e.0))?;
                    let groups = self.groups_of(&p, &[]).await?;
                    Ok(Some((p, groups)))
                }
                None => Ok(None),
            };
        }
        Err(unauthenticated(caller))
    }

    /// The person deciding on an existing request (approve, deny, decide
    /// an extension, revoke): as [`Broker::acting`], but a trusted caller
    /// may name someone only when it is trusted to decide as well.
    pub(crate) async fn deciding(
        &self,
        caller: &Caller,
        on_behalf_of: Option<&str>,
        what: &str,
    ) -> Result<Option<(Principal, Vec<String>)>, ServiceError> {
        if let Some(t) = caller.through()
            && on_behalf_of.is_some()
            && !caller.trusted_to_decide
        {
            return Err(ServiceError::forbidden(
                "not_trusted_decider",
                Some("requester"),
                format!(
                    "the trusted caller `{t}` may request for someone else but may not {what} for them: it is not configured as a trusted decider"
                ),
            ));
        }
        self.acting(caller, on_behalf_of).await
    }

    fn entitlement(
        &self,
        req: &NewRequest,
        groups: &[String],
    ) -> Result<&Entitlement, ServiceError> {
        let field = if req.entitlement_field.is_empty() {
            "entitlement"
        } else {
            req.entitlement_field
        };
        let name = req
            .entitlement
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                ServiceError::invalid(field, "is required: name an entitlement from the catalog")
            })?;
        self.catalog.get(name).ok_or_else(|| {
            let hint = match self.catalog.nearest_name(name, groups) {
                Some(n) => format!("; did you mean `{n}`?"),
                None => String::new(),
            };
            ServiceError::Invalid {
                code: "unknown_entitlement",
                field: Some(field.to_string()),
                message: format!(
                    "no entitlement named `{name}` in the catalog (names are case-sensitive){hint} `GET /entitlements` (`jit entitlements`) lists those you may request"
                ),
            }
        })
    }

    /// Creates a request and starts its workflow. Returns the request and
    /// whether it was created now (false: an idempotent replay).
    pub async fn create(
        &self,
        caller: &Caller,
        req: NewRequest,
    ) -> Result<(AccessRequest, bool), ServiceError> {
        let (request, created) = self.record(caller, req).await?;
        if created {
            self.start_standard(&request).await?;
        }
        Ok((request, created))
    }

    /// Checks a create call and stores the request (`false`: an idempotent
    /// replay of an earlier one, returned as stored). Starts nothing.
    pub(crate) async fn record(
        &self,
        caller: &Caller,
        req: NewRequest,
    ) -> Result<(AccessRequest, bool), ServiceError> {
        let requester = self
            .resolve_requester(caller, req.requester.as_deref())
            .await?;
        let ent = self.entitlement(&req, &requester.groups)?;

        if let Some(arn) = &req.role_arn {
            match &ent.target {
                GrantTarget::AssumeRole { role_arn } if role_arn.as_str() == arn => {}
                GrantTarget::AssumeRole { role_arn } => {
                    return Err(ServiceError::invalid(
                        "roleArn",
                        format!(
                            "is not the role catalogued for `{}` ({role_arn}); omit it or send that ARN",
                            ent.name
                        ),
                    ));
                }
                GrantTarget::AttachPolicy { .. } => {
                    return Err(ServiceError::invalid(
                        "roleArn",
                        format!(
                            "`{}` attaches a policy and takes no role ARN; omit it",
                            ent.name
                        ),
                    ));
                }
                GrantTarget::PermissionSet { .. } => {
                    return Err(ServiceError::invalid(
                        "roleArn",
                        format!(
                            "`{}` assigns an Identity Center permission set and takes no role ARN; omit it",
                            ent.name
                        ),
                    ));
                }
            }
        }
        let (target, account) = crate::identity_center::requested_accounts(ent, &req)?;
        if let Some(a) = &req.account
            && !matches!(ent.target, GrantTarget::PermissionSet { .. })
        {
            let a =
                AccountId::parse(a.clone()).map_err(|e| ServiceError::invalid("account", e.0))?;
            if a != ent.account {
                return Err(ServiceError::invalid(
                    "account",
                    format!(
                        "`{}` is granted in account {}, not {a}",
                        ent.name, ent.account
                    ),
                ));
            }
        }
        let duration = match &req.duration {
            None => ent.default_duration,
            Some(d) => {
                let secs = d
                    .to_secs()
                    .map_err(|e| ServiceError::invalid("duration", e.0))?;
                if secs < ent.min_duration.secs() as u64 || secs > ent.max_duration.secs() as u64 {
                    return Err(ServiceError::invalid(
                        "duration",
                        format!(
                            "must be between {} and {} ({}s-{}s) for `{}`",
                            ent.min_duration,
                            ent.max_duration,
                            ent.min_duration.secs(),
                            ent.max_duration.secs(),
                            ent.name
                        ),
                    ));
                }
                GrantDuration::from_secs(secs)
                    .map_err(|e| ServiceError::invalid("duration", e.0))?
            }
        };
        let justification = req.justification.clone().unwrap_or_default();
        if req.justification_required && justification.trim().is_empty() {
            return Err(ServiceError::invalid(
                "justification",
                "is required: say why you need this access",
            ));
        }
        if justification.chars().count() > MAX_JUSTIFICATION_CHARS {
            return Err(ServiceError::invalid(
                "justification",
                format!("must be at most {MAX_JUSTIFICATION_CHARS} characters"),
            ));
        }
        if justification
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ServiceError::invalid(
                "justification",
                "must not contain control characters",
            ));
        }
        let idempotency_key = match &req.idempotency_key {
            None => None,
            Some(k) => Some(
                IdempotencyKey::parse(k.clone())
                    .map_err(|e| ServiceError::invalid("idempotencyKey", e.0))?,
            ),
        };

        let now = self.clock.now();
        if !self.catalog.is_eligible(ent, &requester.groups) {
            let mut event = AuditEvent::new(
                &RequestId::generate(now),
                now,
                requester.principal.to_string(),
                AuditAction::Rejected,
                None,
                None,
                Some(format!(
                    "not eligible for `{}`: requires one of the groups [{}]",
                    ent.name,
                    ent.eligible_groups.join(", ")
                )),
                "api",
            );
            event.entitlement = Some(ent.name.clone());
            event.code = Some("not_eligible".into());
            self.store.append_audit(&event).await?;
            tracing::info!(requester = %requester.principal, entitlement = %ent.name, "request rejected: not eligible");
            return Err(ServiceError::forbidden(
                "not_eligible",
                Some(req.entitlement_field_or_default()),
                format!("you are not in a group eligible for `{}`", ent.name),
            ));
        }

        let break_glass = self.break_glass_check(&req, ent, &requester)?;

        // `approvers: none` (or an auto-approve-only entry asked beyond its
        // rule): nobody could ever decide this request, so it is refused
        // now instead of waiting for no one until its window closes.
        let auto = self.catalog.auto_approves(ent, &requester.groups, duration)
            || (self.settings.demo_mode && req.simulate_approval)
            || break_glass.is_some();
        if !auto && !ent.has_approvers() {
            return Err(ServiceError::Invalid {
                code: "no_approvers",
                field: Some(req.entitlement_field_or_default().to_string()),
                message: format!(
                    "nobody approves `{}` (the catalog says `approvers: none`{}) and no auto-approve rule accepts this request{}",
                    ent.name,
                    if ent.approvers_none { "" } else { " in effect" },
                    match &ent.auto_approve {
                        Some(a) => format!(
                            ": its rule accepts the groups [{}] for at most {}",
                            a.groups.join(", "),
                            a.max_duration
                        ),
                        None => String::new(),
                    }
                ),
            });
        }

        self.check_scope(ent, req.scope.as_ref(), &justification)
            .await?;
        let mut fingerprint = fingerprint(
            &requester.principal,
            &ent.name,
            fingerprint_accounts(&account, &target),
            duration,
            &justification,
            req.simulate_approval,
            break_glass.is_some(),
        );
        if let Some(scope) = &req.scope {
            // Only scoped requests change their fingerprint: older records
            // keep theirs.
            let text = serde_json::to_string(scope).expect("a scope serializes");
            fingerprint = crate::policy::digest(&format!("{fingerprint}{text}"));
        }
        // Break-glass: the requester's own approval, recorded as such.
        let decisions = match &break_glass {
            Some(_) => vec![crate::request::Decision {
                approver: requester.principal.clone(),
                verdict: crate::request::Verdict::Approve,
                at: now,
                reason: Some("break-glass: self-approved".into()),
                groups: requester.groups.clone(),
                via: Some(crate::break_glass::FLAG.into()),
                trusted_caller: None,
            }],
            None => vec![],
        };
        let request = AccessRequest {
            request_id: RequestId::generate(now),
            requester,
            entitlement: ent.name.clone(),
            account,
            target,
            duration,
            justification,
            status: Status::Requested,
            created_at: now,
            updated_at: now,
            decided_at: None,
            granted_at: None,
            expires_at: None,
            decisions,
            reason: None,
            session_policy: None,
            scope: req.scope.clone(),
            policy_generation: None,
            idempotency_key,
            request_fingerprint: Some(fingerprint),
            simulate_approval: req.simulate_approval,
            task_token: None,
            used_link_nonces: vec![],
            notice: None,
            extensions: vec![],
            session_deny: None,
            break_glass,
            break_glass_notice: None,
            version: 1,
        };
        let created = AuditEvent::new(
            &request.request_id,
            now,
            request.requester.principal.to_string(),
            AuditAction::Created,
            None,
            Some(Status::Requested),
            None,
            "api",
        );
        let request = match self.store.create(&request, &created).await? {
            CreateOutcome::Created(r) => r,
            CreateOutcome::Existing(r) => return Ok((r, false)),
        };
        tracing::info!(request_id = %request.request_id, entitlement = %request.entitlement, status = %request.status, "request created");
        Ok((request, true))
    }

    /// The break-glass rules of a create: a `break_glass: true` entitlement
    /// is asked for only with `"breakGlass": true` and vice versa, by a
    /// requester signed in as themselves, with a justification of at least
    /// 20 characters carrying an incident reference. Answers the record's
    /// break-glass part (`None` for an ordinary request).
    fn break_glass_check(
        &self,
        req: &NewRequest,
        ent: &Entitlement,
        requester: &Requester,
    ) -> Result<Option<crate::break_glass::BreakGlass>, ServiceError> {
        match (req.break_glass, ent.break_glass) {
            (false, false) => return Ok(None),
            (true, false) => {
                return Err(ServiceError::Invalid {
                    code: "not_break_glass",
                    field: Some("breakGlass".into()),
                    message: format!(
                        "`{}` is not a break-glass entitlement (the catalog does not say `break_glass: true`): request it normally, without `breakGlass`",
                        ent.name
                    ),
                });
            }
            (false, true) => {
                return Err(ServiceError::Invalid {
                    code: "break_glass_required",
                    field: Some("breakGlass".into()),
                    message: format!(
                        "`{}` is a break-glass entitlement: it is granted only as break-glass, self-approved and reviewed afterwards; send `\"breakGlass\": true` (`jit break-glass {} --reason \"INC-123: …\"`)",
                        ent.name, ent.name
                    ),
                });
            }
            (true, true) => {}
        }
        if requester.authenticated_by == AuthSource::TrustedCaller {
            return Err(ServiceError::forbidden(
                "break_glass_needs_identity",
                Some("requester"),
                "break-glass is self-approval: the requester must call as themselves, not through a trusted caller",
            ));
        }
        let justification = req.justification.as_deref().unwrap_or_default();
        let incident = crate::break_glass::check_justification(
            self.catalog.incident_pattern(),
            justification,
        )?;
        Ok(Some(crate::break_glass::BreakGlass {
            incident,
            review: None,
        }))
    }

    /// Starts a stored request's (Standard) workflow; if that fails the
    /// request is recorded FAILED and the caller told to retry.
    pub(crate) async fn start_standard(&self, request: &AccessRequest) -> Result<(), ServiceError> {
        let ent = self
            .catalog
            .get(&request.entitlement)
            .ok_or_else(|| ServiceError::Internal {
                detail: format!(
                    "entitlement {} vanished from the catalog",
                    request.entitlement
                ),
            })?;
        let input = self.workflow_input(request, ent);
        if let Err(e) = self.workflow.start(&input).await {
            tracing::error!(request_id = %request.request_id, error = %e, "could not start the workflow");
            let change = Change {
                actor: crate::request::system_actor("api"),
                at: self.clock.now(),
                reason: Some("the approval workflow could not be started".into()),
                source: "api",
            };
            if let Ok((failed, ev)) = request.transition(Status::Failed, &change)
                && let Err(e) = self.store.transition(request, &failed, &ev).await
            {
                tracing::error!(request_id = %request.request_id, error = %e, "could not record the failure");
            }
            return Err(ServiceError::Unavailable {
                code: "workflow_unavailable",
                message: format!(
                    "request {} was recorded but its approval workflow could not be started; it is marked FAILED, please retry",
                    request.request_id
                ),
            });
        }
        Ok(())
    }

    /// The workflow's input for a stored request: derived from the record
    /// and the catalog only, so a start repeated by the reconcile pass
    /// sends the same input as the first (Step Functions' idempotent start).
    pub(crate) fn workflow_input(&self, r: &AccessRequest, ent: &Entitlement) -> WorkflowInput {
        let auto_approve = self
            .catalog
            .auto_approves(ent, &r.requester.groups, r.duration)
            || (self.settings.demo_mode && r.simulate_approval)
            || r.break_glass.is_some();
        WorkflowInput {
            request_id: r.request_id.clone(),
            entitlement: ent.name.clone(),
            auto_approve,
            approval_timeout_seconds: ent.approval_timeout_secs,
            duration_seconds: r.duration.secs(),
            generate_policy: r.scope.is_some() || ent.policy.session_policy.is_some(),
        }
    }

    fn parse_id(id: &str) -> Result<RequestId, ServiceError> {
        RequestId::parse(id).map_err(|_| ServiceError::not_found(id))
    }

    /// Whether `who` may see `r`: its requester, an approver of its
    /// entitlement, a member of the catalog's `admin_groups`, or a trusted
    /// caller.
    fn may_see(
        &self,
        caller: &Caller,
        who: Option<&(Principal, Vec<String>)>,
        r: &AccessRequest,
    ) -> bool {
        if caller.trusted_as.is_some() {
            return true;
        }
        let Some((p, groups)) = who else { return false };
        if *p == r.requester.principal || self.catalog.is_admin(groups) {
            return true;
        }
        self.catalog
            .get(&r.entitlement)
            .is_some_and(|e| self.catalog.is_approver(e, p, groups))
    }

    /// Loads a request the caller may see; anything else is a 404.
    pub(crate) async fn load_visible(
        &self,
        caller: &Caller,
        who: Option<&(Principal, Vec<String>)>,
        id: &str,
    ) -> Result<AccessRequest, ServiceError> {
        let rid = Self::parse_id(id)?;
        let r = self
            .store
            .get(&rid)
            .await?
            .ok_or_else(|| ServiceError::not_found(id))?;
        if !self.may_see(caller, who, &r) {
            return Err(ServiceError::not_found(id));
        }
        Ok(r)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<AccessRequest, ServiceError> {
        let who = self.acting(caller, None).await?;
        self.load_visible(caller, who.as_ref(), id).await
    }

    /// The workflow execution's history (Step Functions' event names).
    pub async fn history(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Vec<serde_json::Value>, ServiceError> {
        let r = self.get(caller, id).await?;
        Ok(self.workflow.history(&r.request_id).await?)
    }

    /// A request the caller may see, from its item or — once TTL deleted
    /// the item — rebuilt read-only from its audit trail (`true`: archived).
    pub async fn get_or_archived(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(AccessRequest, bool), ServiceError> {
        let who = self.acting(caller, None).await?;
        let rid = Self::parse_id(id)?;
        let (r, archived) = match self.store.get(&rid).await? {
            Some(r) => (r, false),
            None => {
                let events = self.store.audit_events(&rid).await?;
                let r = crate::trail::replay(&events).ok_or_else(|| ServiceError::not_found(id))?;
                (r, true)
            }
        };
        if !self.may_see(caller, who.as_ref(), &r) {
            return Err(ServiceError::not_found(id));
        }
        Ok((r, archived))
    }

    /// A request's audit trail; it outlives the request's item.
    pub async fn audit(&self, caller: &Caller, id: &str) -> Result<Vec<AuditEvent>, ServiceError> {
        let (r, _) = self.get_or_archived(caller, id).await?;
        Ok(self.store.audit_events(&r.request_id).await?)
    }

    /// Audits a refused attempt on a stored request (self-approval, not an
    /// approver), so admins see it in the trail and in analytics.
    pub(crate) async fn audit_refusal(
        &self,
        r: &AccessRequest,
        actor: String,
        code: &str,
        reason: String,
        source: &str,
    ) -> Result<(), ServiceError> {
        let mut event = AuditEvent::new(
            &r.request_id,
            self.clock.now(),
            actor,
            AuditAction::Rejected,
            None,
            None,
            Some(reason),
            source,
        );
        event.entitlement = Some(r.entitlement.clone());
        event.code = Some(code.to_string());
        event.flag_for(r);
        self.store.append_audit(&event).await?;
        Ok(())
    }

    /// The caller's own requests, or (with `status`) the requests in that
    /// status the caller may decide.
    pub async fn list(
        &self,
        caller: &Caller,
        on_behalf_of: Option<&str>,
        q: &ListQuery,
    ) -> Result<Page<AccessRequest>, ServiceError> {
        let who = self.acting(caller, on_behalf_of).await?.ok_or_else(|| {
            ServiceError::invalid(
                "requester",
                "is required when a trusted caller lists requests",
            )
        })?;
        let limit = q.page.limit.clamp(1, PageRequest::MAX_LIMIT);
        let page = PageRequest {
            limit,
            cursor: q.page.cursor.clone(),
        };
        match q.status {
            None => Ok(self.store.list_by_requester(&who.0, &page).await?),
            Some(status) => {
                let mut p = self.store.list_by_status(status, &page).await?;
                p.items.retain(|r| {
                    r.requester.principal != who.0
                        && self
                            .catalog
                            .get(&r.entitlement)
                            .is_some_and(|e| self.catalog.is_approver(e, &who.0, &who.1))
                });
                Ok(p)
            }
        }
    }

    /// Cancels a pending request (its requester only) and stops its workflow.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
        on_behalf_of: Option<&str>,
        reason: Option<String>,
    ) -> Result<AccessRequest, ServiceError> {
        let who = self.acting(caller, on_behalf_of).await?;
        let r = self.load_visible(caller, who.as_ref(), id).await?;
        let rid = r.request_id.clone();
        let Some((p, _)) = who else {
            return Err(ServiceError::invalid(
                "requester",
                "is required when a trusted caller cancels a request",
            ));
        };
        if p != r.requester.principal {
            return Err(ServiceError::forbidden(
                "not_requester",
                None,
                "only the requester can cancel a request",
            ));
        }
        if let Some(reason) = &reason
            && reason.chars().count() > MAX_JUSTIFICATION_CHARS
        {
            return Err(ServiceError::invalid(
                "reason",
                format!("must be at most {MAX_JUSTIFICATION_CHARS} characters"),
            ));
        }
        let status = r.effective_status(self.clock.now());
        if status == Status::Approved {
            return Err(already_approved_cancel());
        }
        if !status.is_pending() {
            return Err(ServiceError::conflict_status(status, "cancelled"));
        }
        let token = r.task_token.clone();
        let (next, event) = r.transition(
            Status::Cancelled,
            &self.change(caller.actor(&p), reason.clone()),
        )?;
        self.store
            .transition(&r, &next, &event)
            .await
            .map_err(|e| match e {
                // Lost to the approval that met the quorum.
                StoreError::Conflict {
                    current: Some(Status::Approved),
                } => already_approved_cancel(),
                other => other.into(),
            })?;
        // Nothing stops an execution (it may be granting): a waiting
        // approval task is failed so the workflow ends itself; a workflow
        // not yet waiting finds the request CANCELLED at its next step.
        if let Some(token) = token
            && let Err(e) = self
                .workflow
                .send_task_failure(&token, "NoLongerApplies", "cancelled by the requester")
                .await
        {
            tracing::warn!(request_id = %rid, error = %e, "could not end the waiting approval task");
        }
        Ok(next)
    }
}

impl NewRequest {
    fn entitlement_field_or_default(&self) -> &str {
        if self.entitlement_field.is_empty() {
            "entitlement"
        } else {
            self.entitlement_field
        }
    }
}

/// A cancel that came after the approval that met the quorum.
fn already_approved_cancel() -> ServiceError {
    ServiceError::Conflict {
        code: "already_decided",
        field: None,
        message: "the request is already approved and being granted; revoke it once it is GRANTED"
            .into(),
        current: Some(Status::Approved),
    }
}

/// What a request's fingerprint says of its accounts: a permission-set
/// request asks for its accounts; the other kinds keep the fingerprint they
/// always had (the one account).
fn fingerprint_accounts(account: &AccountId, target: &GrantTarget) -> serde_json::Value {
    match target {
        GrantTarget::PermissionSet { accounts, .. } => serde_json::json!(accounts),
        _ => serde_json::json!(account),
    }
}

fn fingerprint(
    who: &Principal,
    entitlement: &str,
    account: serde_json::Value,
    duration: GrantDuration,
    justification: &str,
    simulate: bool,
    break_glass: bool,
) -> String {
    let mut canonical = serde_json::json!([
        who,
        entitlement,
        account,
        duration.secs(),
        justification,
        simulate
    ]);
    if break_glass {
        // Only then, so fingerprints of ordinary requests stay as they were.
        if let Some(a) = canonical.as_array_mut() {
            a.push(serde_json::json!("break-glass"));
        }
    }
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The refusal for a call that names nobody, with the way to name oneself
/// at the caller's front door.
fn unauthenticated(caller: &Caller) -> ServiceError {
    let how = caller.identify_hint.unwrap_or(
        "sign the call (IAM) or send a token the authorizer accepts (its `email` counts only with `email_verified: true`; otherwise `sub` names you)",
    );
    ServiceError::forbidden(
        "unauthenticated",
        None,
        format!("no authenticated identity: {how}"),
    )
}
