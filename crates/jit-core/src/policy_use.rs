//! The least-privilege use cases: a scope checked when a request is
//! created, and `POST /policies/preview`.

use crate::catalog::Entitlement;
use crate::error::ServiceError;
use crate::identity::Caller;
use crate::policy::{GeneratedPolicy, GenerationError, GenerationInput, GenerationMode, Scope};
use crate::service::Broker;

/// The generator's input for a request on `ent`: its scope, or (without
/// one) the catalog's fixed `session_policy:`.
pub fn input_for(ent: &Entitlement, scope: Option<&Scope>, justification: &str) -> GenerationInput {
    GenerationInput {
        entitlement: ent.name.clone(),
        scope: scope.cloned(),
        fixed_policy: if scope.is_none() {
            ent.policy.session_policy.clone()
        } else {
            None
        },
        justification: justification.to_string(),
        ceiling: ent.policy.ceiling.clone(),
    }
}

fn refusal(e: GenerationError) -> ServiceError {
    match e {
        GenerationError::Refused { field, message } => ServiceError::Invalid {
            code: "invalid_scope",
            field: Some(field),
            message,
        },
        GenerationError::Unavailable { message } => ServiceError::Unavailable {
            code: "policy_generation_unavailable",
            message: format!("policies cannot be generated now: {message}"),
        },
    }
}

fn scope_refused(message: String) -> ServiceError {
    ServiceError::Invalid {
        code: "invalid_scope",
        field: Some("scope".into()),
        message,
    }
}

impl Broker {
    /// The catalog's `policy_generation:` against the request's scope, and
    /// the scope through the generator: a scope that cannot be honoured
    /// (unknown actions, outside the ceiling, too wide for STS) is refused
    /// here, before anything is stored.
    pub(crate) async fn check_scope(
        &self,
        ent: &Entitlement,
        scope: Option<&Scope>,
        justification: &str,
    ) -> Result<Option<GeneratedPolicy>, ServiceError> {
        match (ent.policy.generation, scope) {
            (GenerationMode::Off, Some(_)) => {
                return Err(scope_refused(format!(
                    "is not accepted for `{}`: its grant is fixed by the catalog (`policy_generation: off`)",
                    ent.name
                )));
            }
            (GenerationMode::Required, None) => {
                return Err(scope_refused(format!(
                    "is required for `{}`: say what you need, as actions and resources, an access level and services, or in words",
                    ent.name
                )));
            }
            (_, None) => return Ok(None),
            (_, Some(_)) => {}
        }
        if let crate::request::GrantTarget::AttachPolicy { policy_name } = &ent.target
            && ent.policy.ceiling.is_empty()
        {
            // A scoped attach grant is an inline policy on the requester
            // (`inline_grants`): unlike a session policy, no role caps it,
            // so only a written ceiling may bound what it grants.
            return Err(scope_refused(format!(
                "is not accepted for `{}`: it attaches the managed policy `{policy_name}` and has no `ceiling:` to bound a narrower inline policy; ask without `scope` (or have the catalog set a ceiling)",
                ent.name
            )));
        }
        let described = matches!(scope, Some(Scope::Describe { .. }));
        if described && !self.policy.as_ref().is_some_and(|g| g.describes()) {
            return Err(ServiceError::Invalid {
                code: "invalid_scope",
                field: Some("scope.describe".into()),
                message: "needs an AI policy generator, and this deployment has none configured: ask with `actions` and `resources`, or `access` and `services`".into(),
            });
        }
        let generator = self.policy.as_ref().ok_or(ServiceError::Unavailable {
            code: "policy_generation_unavailable",
            message: "this deployment generates no session policies: ask without `scope`".into(),
        })?;
        if described {
            // The model is asked once, by the GeneratePolicy step; what it
            // answers is validated there, and a refused answer does not
            // refuse the request (see `PolicyGenerator::describes`).
            return Ok(None);
        }
        generator
            .generate(&input_for(ent, scope, justification))
            .await
            .map(Some)
            .map_err(refusal)
    }

    /// `POST /policies/preview`: the policy a request with this scope
    /// would carry, validated, without creating anything. The caller must
    /// be eligible for the entitlement (the answer reflects its ceiling).
    pub async fn preview_policy(
        &self,
        caller: &Caller,
        entitlement: &str,
        scope: Option<Scope>,
        justification: &str,
    ) -> Result<GeneratedPolicy, ServiceError> {
        let (_, groups) = self.acting(caller, None).await?.ok_or_else(|| {
            ServiceError::forbidden(
                "unauthenticated",
                Some("requester"),
                "a preview is for the person who would request: call as yourself",
            )
        })?;
        let ent = self
            .catalog
            .get(entitlement)
            .ok_or_else(|| ServiceError::Invalid {
                code: "unknown_entitlement",
                field: Some("entitlement".into()),
                message: format!(
                    "no entitlement named `{entitlement}` in the catalog (names are case-sensitive)"
                ),
            })?;
        if !self.catalog.is_eligible(ent, &groups) {
            return Err(ServiceError::forbidden(
                "not_eligible",
                Some("entitlement"),
                format!("you are not in a group eligible for `{}`", ent.name),
            ));
        }
        if let Some(g) = self.check_scope(ent, scope.as_ref(), justification).await? {
            return Ok(g);
        }
        if let (Some(Scope::Describe { .. }), Some(generator)) = (&scope, &self.policy) {
            // A preview asks the model now, and shows its answer validated
            // (or why it was refused).
            return generator
                .generate(&input_for(ent, scope.as_ref(), justification))
                .await
                .map_err(refusal);
        }
        if ent.policy.session_policy.is_none() {
            return Err(scope_refused(format!(
                "is required: `{}` has no fixed session policy to preview, and without a scope its grant is the entitlement's full permissions",
                ent.name
            )));
        }
        let generator = self.policy.as_ref().ok_or(ServiceError::Unavailable {
            code: "policy_generation_unavailable",
            message: "this deployment validates no session policies".into(),
        })?;
        generator
            .generate(&input_for(ent, None, justification))
            .await
            .map_err(refusal)
    }
}
