//! The workflow's GeneratePolicy step: a request with a `scope` (or whose
//! entitlement fixes a `session_policy:`) gets its session policy, passes
//! through POLICY_GENERATION, and the transition's audit event names the
//! generator and the policy's digest.
//!
//! Idempotent like every step: a re-run finds the policy recorded and
//! answers where the request is. If generation fails now (the catalog
//! changed since the request was checked, an AI answer failed
//! validation), `policy_generation: required` fails the request; otherwise
//! it goes on with the entitlement's full permissions, and the record says
//! so to the approvers.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::ids::RequestId;
use crate::lifecycle::Status;
use crate::policy::{
    GenerationError, GenerationMode, PolicyGenerator, PolicyProvenance, RoleCeilings, digest,
};
use crate::policy_use::input_for;
use crate::ports::{Clock, RequestStore, StoreError};
use crate::request::{AccessRequest, Change, system_actor};
use crate::tasks::TaskError;

/// The step's dependencies: built by the `update-status` Lambda (which
/// serves the definition's `${GeneratePolicyFunctionArn}`) and `jit-local`.
#[derive(Clone)]
pub struct PolicyStep {
    pub store: Arc<dyn RequestStore>,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    pub generator: Arc<dyn PolicyGenerator>,
    /// For a role entitlement without the catalog's `ceiling:`: the role's
    /// own policies as the ceiling (deployed; `None` in `jit-local`).
    pub ceilings: Option<Arc<dyn RoleCeilings>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    request_id: String,
}

fn answer(r: &AccessRequest) -> Value {
    json!({ "requestId": r.request_id, "status": r.status })
}

impl PolicyStep {
    /// Fills `input.ceiling` from the role's own policies when the catalog
    /// gives none (a scope, a role entitlement, a `RoleCeilings` port).
    /// Returns the note saying so. A role whose policies cannot be read
    /// leaves the ceiling empty (the role still caps the session) and says
    /// that instead.
    async fn role_ceiling(
        &self,
        ent: &crate::catalog::Entitlement,
        input: &mut crate::policy::GenerationInput,
    ) -> Option<String> {
        let (Some(ceilings), Some(_), true) =
            (&self.ceilings, &input.scope, input.ceiling.is_empty())
        else {
            return None;
        };
        let crate::request::GrantTarget::AssumeRole { role_arn } = &ent.target else {
            return None;
        };
        match ceilings.ceiling(role_arn).await {
            Ok(Some(actions)) if !actions.is_empty() => {
                let note = format!(
                    "ceiling: the {} action patterns the role's own policies allow ({role_arn})",
                    actions.len()
                );
                input.ceiling = actions;
                Some(note)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(role = %role_arn, error = %e, "reading the role's policies for a ceiling failed");
                Some(format!(
                    "the role's own policies could not be read as a ceiling ({e}): only the role caps the session"
                ))
            }
        }
    }

    /// `GeneratePolicy`: VALIDATING -> POLICY_GENERATION with the policy.
    pub async fn generate_policy(&self, payload: Value) -> Result<Value, TaskError> {
        let p: Payload = serde_json::from_value(payload)
            .map_err(|e| TaskError::InvalidInput(format!("payload: {e}")))?;
        let id = RequestId::parse(&p.request_id)
            .map_err(|e| TaskError::InvalidInput(format!("requestId: {}", e.0)))?;
        for _ in 0..3 {
            let r = self
                .store
                .get(&id)
                .await?
                .ok_or_else(|| TaskError::RequestNotFound(format!("no request {id}")))?;
            match r.status {
                Status::Validating => {}
                // Re-run after the policy was recorded, or the request
                // moved on along this execution: go on from there.
                Status::PolicyGeneration
                | Status::ApprovalPending
                | Status::Approved
                | Status::Granted => return Ok(answer(&r)),
                s => {
                    return Err(TaskError::NoLongerApplies(format!(
                        "the request is {s}; no policy is generated for it"
                    )));
                }
            }
            let ent = self.catalog.get(&r.entitlement).ok_or_else(|| {
                TaskError::NoLongerApplies(format!(
                    "the entitlement `{}` is no longer in the catalog",
                    r.entitlement
                ))
            })?;
            let mut input = input_for(ent, r.scope.as_ref(), &r.justification);
            let role_ceiling = self.role_ceiling(ent, &mut input).await;
            let (policy, provenance, reason) = if r.scope.is_none() && input.fixed_policy.is_none()
            {
                // Nothing to generate from: nothing is recorded but the pass.
                (
                    None,
                    None,
                    "no scope: the grant is the entitlement".to_string(),
                )
            } else {
                match self.generator.generate(&input).await {
                    Ok(mut g) => {
                        g.notes.extend(role_ceiling.clone());
                        let d = digest(&g.document);
                        let reason = format!(
                            "session policy by `{}` ({d}, {} characters packed)",
                            g.generator, g.packed_chars
                        );
                        let prov = PolicyProvenance {
                            generator: g.generator,
                            digest: Some(d),
                            summary: g.summary,
                            notes: g.notes,
                        };
                        (Some(g.document), Some(prov), reason)
                    }
                    Err(GenerationError::Unavailable { message }) => {
                        return Err(TaskError::Transient(format!(
                            "policy generation: {message}"
                        )));
                    }
                    Err(e @ GenerationError::Refused { .. }) => {
                        if ent.policy.generation == GenerationMode::Required
                            || ent.policy.session_policy.is_some()
                        {
                            // No policy may mean no grant: the workflow
                            // records FAILED with this message.
                            return Err(TaskError::GrantFailed(format!(
                                "no valid session policy for this request: {e}"
                            )));
                        }
                        let note = format!(
                            "policy generation failed ({e}); the grant carries the entitlement's full permissions"
                        );
                        let mut notes = vec![note.clone()];
                        notes.extend(role_ceiling.clone());
                        let prov = PolicyProvenance {
                            generator: "none".into(),
                            digest: None,
                            summary: vec![],
                            notes,
                        };
                        (None, Some(prov), note)
                    }
                }
            };
            let change = Change {
                actor: system_actor("workflow"),
                at: self.clock.now(),
                reason: Some(reason),
                source: "workflow",
            };
            let (mut next, event) = r
                .transition(Status::PolicyGeneration, &change)
                .map_err(|e| TaskError::NoLongerApplies(e.to_string()))?;
            next.session_policy = policy;
            next.policy_generation = provenance;
            match self.store.transition(&r, &next, &event).await {
                Ok(()) => {
                    tracing::info!(
                        request_id = %id,
                        generator = next.policy_generation.as_ref().map(|p| p.generator.as_str()).unwrap_or("-"),
                        "policy generated"
                    );
                    return Ok(answer(&next));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TaskError::Transient(format!(
            "request {id} kept changing; retry"
        )))
    }
}
