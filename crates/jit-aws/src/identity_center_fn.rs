//! IAM Identity Center through the `identity-center` Lambda: the typed JSON
//! protocol between the functions that need Identity Center and the one
//! function that links `aws-sdk-ssoadmin` and `aws-sdk-identitystore`.
//!
//! Why a function of its own: those two clients took `expire` over the
//! 6 MB Lambda target and `request`/`access` over it with the Identity
//! Store client alone (docs/ARCHITECTURE.md, "Permission sets"). Here,
//! [`LambdaIdentityCenter`] implements the core's ports
//! ([`AssignmentManager`], [`Provisioning`], [`GroupDirectory`]) by
//! invoking the function synchronously (a SigV4-signed `Invoke`), and
//! [`serve`] is the function's whole handler: one port call
//! per event, answered as JSON. The grant ledger stays with the caller
//! (`ledger::GrantIam` writes the intent before the invoke and completes it
//! after), so crash-safety is what it was.
//!
//! Errors cross as Lambda function errors (`X-Amz-Function-Error`) whose
//! `errorType` is [`TRANSIENT`] or [`PERMANENT`]; whatever else the runtime
//! reports (a timeout, a crash) is transient: every call is idempotent and
//! the caller's step is retried.
//!
//! The function runs in one of two modes ([`Mode`]): `assignments` (every
//! call; invoked by the task functions) or `directory` (user ids and groups
//! only; invoked by the HTTP API functions), deployed as two functions with
//! two roles, so the internet-facing functions cannot reach
//! `sso:CreateAccountAssignment` even indirectly.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::lambda_invoke::{FunctionError, InvocationType, Invoker};
use async_trait::async_trait;
use jit_core::identity_center::{
    Assignment, AssignmentManager, GroupDirectory, PermissionSetInfo, Provisioning,
};
use jit_core::ports::GrantError;
use jit_core::{AccountId, Principal};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `errorType` of a failure worth retrying (throttling, a 5xx, provisioning
/// still in progress after the wait bound).
pub const TRANSIENT: &str = "Transient";
/// `errorType` of a failure retrying cannot fix (access denied, provisioning
/// failed, a call this function does not serve, a malformed event).
pub const PERMANENT: &str = "Permanent";

/// The environment variable naming the function a caller invokes.
pub const FUNCTION_VAR: &str = "JIT_IDENTITY_CENTER_FUNCTION";
/// The environment variable the function reads its [`Mode`] from.
pub const MODE_VAR: &str = "JIT_IDENTITY_CENTER_MODE";

/// One call: a port method and its arguments. The answer is the method's
/// result as JSON (`null`, a string, a list, or a permission set object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "op",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Call {
    /// [`AssignmentManager::user_id`]: `"<user id>"` or `null`.
    UserId { user: String },
    /// [`GroupDirectory::groups_of`]: the group display names.
    GroupsOf { user: String },
    /// [`AssignmentManager::permission_set`]: a [`WirePermissionSet`] or
    /// `null`.
    PermissionSet { name_or_arn: String },
    /// [`AssignmentManager::create`] (waits for provisioning): `null`.
    CreateAssignment {
        account: String,
        permission_set_arn: String,
        user_id: String,
    },
    /// [`AssignmentManager::delete`] (waits for the deletion): `null`.
    DeleteAssignment {
        account: String,
        permission_set_arn: String,
        user_id: String,
    },
    /// [`AssignmentManager::assigned_users`]: user ids.
    AssignedUsers {
        account: String,
        permission_set_arn: String,
    },
    /// [`Provisioning::provisioned_accounts`]: account ids.
    ProvisionedAccounts { permission_set_arn: String },
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::UserId { .. } => "userId",
            Call::GroupsOf { .. } => "groupsOf",
            Call::PermissionSet { .. } => "permissionSet",
            Call::CreateAssignment { .. } => "createAssignment",
            Call::DeleteAssignment { .. } => "deleteAssignment",
            Call::AssignedUsers { .. } => "assignedUsers",
            Call::ProvisionedAccounts { .. } => "provisionedAccounts",
        }
    }

    /// Whether a `directory` function serves it: reads of the Identity
    /// Store only.
    fn is_directory(&self) -> bool {
        matches!(self, Call::UserId { .. } | Call::GroupsOf { .. })
    }

    fn assignment(a: &Assignment, create: bool) -> Call {
        let (account, permission_set_arn, user_id) = (
            a.account.to_string(),
            a.permission_set_arn.clone(),
            a.user_id.clone(),
        );
        if create {
            Call::CreateAssignment {
                account,
                permission_set_arn,
                user_id,
            }
        } else {
            Call::DeleteAssignment {
                account,
                permission_set_arn,
                user_id,
            }
        }
    }
}

/// A permission set on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePermissionSet {
    pub arn: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<String>,
}

impl From<PermissionSetInfo> for WirePermissionSet {
    fn from(p: PermissionSetInfo) -> Self {
        WirePermissionSet {
            arn: p.arn,
            name: p.name,
            session_duration: p.session_duration,
        }
    }
}

impl From<WirePermissionSet> for PermissionSetInfo {
    fn from(p: WirePermissionSet) -> Self {
        PermissionSetInfo {
            arn: p.arn,
            name: p.name,
            session_duration: p.session_duration,
        }
    }
}

/// What the function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every call (the task functions' function).
    Assignments,
    /// User ids and group memberships only (the HTTP API functions').
    Directory,
}

impl Mode {
    /// [`MODE_VAR`]'s value: `assignments` or `directory`; nothing else
    /// (no default: the mode is the function's privilege, said out loud).
    pub fn parse(value: Option<&str>) -> Result<Mode, String> {
        match value {
            Some("assignments") => Ok(Mode::Assignments),
            Some("directory") => Ok(Mode::Directory),
            Some(other) => Err(format!(
                "{MODE_VAR}: `{other}` must be `assignments` or `directory`"
            )),
            None => Err(format!(
                "{MODE_VAR} is not set: `assignments` (task functions) or `directory` (HTTP API functions)"
            )),
        }
    }
}

/// A failed call as the function reports it (`errorType`, `errorMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError {
    /// [`TRANSIENT`] or [`PERMANENT`].
    pub error_type: &'static str,
    pub message: String,
}

impl ServeError {
    fn permanent(message: impl Into<String>) -> Self {
        ServeError {
            error_type: PERMANENT,
            message: message.into(),
        }
    }
}

impl From<GrantError> for ServeError {
    fn from(e: GrantError) -> Self {
        ServeError {
            error_type: if matches!(e, GrantError::Transient(_)) {
                TRANSIENT
            } else {
                PERMANENT
            },
            message: e.to_string(),
        }
    }
}

/// The Identity Center the function serves from (the SDK adapter deployed,
/// any implementation in tests).
pub struct Ports<'a> {
    pub manager: &'a dyn AssignmentManager,
    pub provisioning: &'a dyn Provisioning,
    pub directory: &'a dyn GroupDirectory,
}

fn principal(user: &str) -> Result<Principal, ServeError> {
    Principal::parse(user).map_err(|e| ServeError::permanent(format!("`user`: {}", e.0)))
}

fn account(account: &str) -> Result<AccountId, ServeError> {
    AccountId::parse(account.to_string())
        .map_err(|e| ServeError::permanent(format!("`account`: {}", e.0)))
}

fn permission_set_arn(arn: &str) -> Result<(), ServeError> {
    // An sso ARN (AWS spells permission sets `…:permissionSet/ssoins-…/ps-…`;
    // moto `…:instance/ssoins-…/ps-…`): Identity Center itself judges the rest.
    let sso = arn
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(_, rest)| rest.starts_with("sso:::"));
    if sso && arn.len() <= 1224 && !arn.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(ServeError::permanent(format!(
            "`permissionSetArn`: `{arn}` is not a permission set ARN"
        )))
    }
}

fn user_id(id: &str) -> Result<(), ServeError> {
    // Identity Store ids: `[A-Za-z0-9-]{1,47}` (a UUID, optionally behind
    // the store's prefix).
    if (1..=47).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        Err(ServeError::permanent(
            "`userId`: not an Identity Store user id",
        ))
    }
}

fn checked_assignment(account_id: &str, ps: &str, user: &str) -> Result<Assignment, ServeError> {
    permission_set_arn(ps)?;
    user_id(user)?;
    Ok(Assignment {
        account: account(account_id)?,
        permission_set_arn: ps.to_string(),
        user_id: user.to_string(),
    })
}

/// The `identity-center` function's handler: decodes one [`Call`], checks
/// its arguments and that `mode` serves it, makes the port call and answers
/// its result as JSON. Logs the operation and its outcome, never a payload.
pub async fn serve(ports: &Ports<'_>, mode: Mode, event: Value) -> Result<Value, ServeError> {
    let call: Call = serde_json::from_value(event)
        .map_err(|e| ServeError::permanent(format!("not an Identity Center call: {e}")))?;
    if mode == Mode::Directory && !call.is_directory() {
        tracing::warn!(
            op = call.name(),
            "refused: this function serves the directory only"
        );
        return Err(ServeError::permanent(format!(
            "`{}` refused: this function serves Identity Store reads only (mode `directory`)",
            call.name()
        )));
    }
    let op = call.name();
    let answer = match call {
        Call::UserId { user } => json(ports.manager.user_id(&principal(&user)?).await?),
        Call::GroupsOf { user } => json(ports.directory.groups_of(&principal(&user)?).await?),
        Call::PermissionSet { name_or_arn } => {
            if name_or_arn.is_empty() || name_or_arn.len() > 1224 {
                return Err(ServeError::permanent("`nameOrArn`: 1 to 1224 characters"));
            }
            json(
                ports
                    .manager
                    .permission_set(&name_or_arn)
                    .await?
                    .map(WirePermissionSet::from),
            )
        }
        Call::CreateAssignment {
            account,
            permission_set_arn,
            user_id,
        } => {
            let a = checked_assignment(&account, &permission_set_arn, &user_id)?;
            ports.manager.create(&a).await?;
            Value::Null
        }
        Call::DeleteAssignment {
            account,
            permission_set_arn,
            user_id,
        } => {
            let a = checked_assignment(&account, &permission_set_arn, &user_id)?;
            ports.manager.delete(&a).await?;
            Value::Null
        }
        Call::AssignedUsers {
            account: a,
            permission_set_arn: ps,
        } => {
            permission_set_arn(&ps)?;
            json(ports.manager.assigned_users(&account(&a)?, &ps).await?)
        }
        Call::ProvisionedAccounts {
            permission_set_arn: ps,
        } => {
            permission_set_arn(&ps)?;
            let accounts = ports.provisioning.provisioned_accounts(&ps).await?;
            json(
                accounts
                    .iter()
                    .map(AccountId::to_string)
                    .collect::<Vec<_>>(),
            )
        }
    };
    tracing::info!(op, "served");
    Ok(answer)
}

fn json<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("plain data serializes")
}

/// The core's Identity Center ports, answered by the `identity-center`
/// function through a synchronous `Invoke`. Permission sets and user ids
/// are cached for the life of the process (as the SDK adapter does);
/// group memberships are cached by the caller's `CachedGroups`, for a
/// bounded time.
///
/// `Invoke` is signed here ([`crate::lambda_invoke`]), not sent through
/// `aws-sdk-lambda`'s client: that client took `request` from 5.96 MB to
/// 6.26 MB (over the 6 MB target).
pub struct LambdaIdentityCenter {
    invoker: Invoker,
    function: String,
    permission_sets: Mutex<HashMap<String, PermissionSetInfo>>,
    users: Mutex<HashMap<Principal, String>>,
}

impl LambdaIdentityCenter {
    /// The function named `function` (name or ARN), invoked with the
    /// configuration's credentials, region and endpoint.
    pub fn from_config(config: &aws_config::SdkConfig, function: impl Into<String>) -> Self {
        LambdaIdentityCenter {
            invoker: Invoker::new(config),
            function: function.into(),
            permission_sets: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Invokes the function with `call` and decodes its answer.
    async fn call<T: DeserializeOwned>(&self, call: &Call) -> Result<T, GrantError> {
        let op = call.name();
        let payload = serde_json::to_vec(call).expect("plain data serializes");
        let invoked = self
            .invoker
            .invoke(&self.function, InvocationType::RequestResponse, payload)
            .await
            .map_err(|e| {
                let text = format!("Invoke identity-center {op}: {}", e.message);
                if e.transient {
                    GrantError::Transient(text)
                } else {
                    GrantError::Other(text)
                }
            })?;
        let (function_error, body) = (invoked.function_error, invoked.payload);
        if let Some(kind) = function_error {
            let err: FunctionError = serde_json::from_slice(&body).unwrap_or_default();
            let error_type = err.error_type.unwrap_or(kind);
            let text = format!(
                "identity-center {op}: {error_type}: {}",
                err.error_message.as_deref().unwrap_or("(no message)")
            );
            // Only the function's own `Permanent` is final; a timeout, a
            // crash or an unknown error is retried (every call is
            // idempotent).
            return Err(if error_type == PERMANENT {
                GrantError::Other(text)
            } else {
                GrantError::Transient(text)
            });
        }
        serde_json::from_slice(&body).map_err(|e| {
            GrantError::Other(format!(
                "identity-center {op}: the answer is not what the protocol says: {e}"
            ))
        })
    }
}

#[async_trait]
impl AssignmentManager for LambdaIdentityCenter {
    async fn user_id(&self, user: &Principal) -> Result<Option<String>, GrantError> {
        if let Some(id) = self.users.lock().expect("cache lock").get(user) {
            return Ok(Some(id.clone()));
        }
        let id: Option<String> = self
            .call(&Call::UserId {
                user: user.to_string(),
            })
            .await?;
        if let Some(id) = &id {
            self.users
                .lock()
                .expect("cache lock")
                .insert(user.clone(), id.clone());
        }
        Ok(id)
    }

    async fn permission_set(
        &self,
        name_or_arn: &str,
    ) -> Result<Option<PermissionSetInfo>, GrantError> {
        if let Some(ps) = self
            .permission_sets
            .lock()
            .expect("cache lock")
            .get(name_or_arn)
        {
            return Ok(Some(ps.clone()));
        }
        let found: Option<WirePermissionSet> = self
            .call(&Call::PermissionSet {
                name_or_arn: name_or_arn.to_string(),
            })
            .await?;
        let found = found.map(PermissionSetInfo::from);
        if let Some(ps) = &found {
            self.permission_sets
                .lock()
                .expect("cache lock")
                .insert(name_or_arn.to_string(), ps.clone());
        }
        Ok(found)
    }

    async fn create(&self, a: &Assignment) -> Result<(), GrantError> {
        self.call::<Value>(&Call::assignment(a, true)).await?;
        Ok(())
    }

    async fn delete(&self, a: &Assignment) -> Result<(), GrantError> {
        self.call::<Value>(&Call::assignment(a, false)).await?;
        Ok(())
    }

    async fn assigned_users(
        &self,
        account: &AccountId,
        permission_set_arn: &str,
    ) -> Result<Vec<String>, GrantError> {
        self.call(&Call::AssignedUsers {
            account: account.to_string(),
            permission_set_arn: permission_set_arn.to_string(),
        })
        .await
    }
}

#[async_trait]
impl Provisioning for LambdaIdentityCenter {
    async fn provisioned_accounts(
        &self,
        permission_set_arn: &str,
    ) -> Result<Vec<AccountId>, GrantError> {
        let ids: Vec<String> = self
            .call(&Call::ProvisionedAccounts {
                permission_set_arn: permission_set_arn.to_string(),
            })
            .await?;
        ids.into_iter()
            .map(|id| {
                AccountId::parse(id).map_err(|e| {
                    GrantError::Other(format!("identity-center provisionedAccounts: {}", e.0))
                })
            })
            .collect()
    }
}

#[async_trait]
impl GroupDirectory for LambdaIdentityCenter {
    async fn groups_of(&self, user: &Principal) -> Result<Vec<String>, GrantError> {
        self.call(&Call::GroupsOf {
            user: user.to_string(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_have_a_stable_wire_form() {
        // The function and its callers may be deployed from different
        // builds for a moment: the JSON is the contract.
        let cases = [
            (
                Call::UserId {
                    user: "alice@example.com".into(),
                },
                json!({"op": "userId", "user": "alice@example.com"}),
            ),
            (
                Call::CreateAssignment {
                    account: "111111111111".into(),
                    permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
                    user_id: "u-1".into(),
                },
                json!({"op": "createAssignment", "account": "111111111111",
                       "permissionSetArn": "arn:aws:sso:::permissionSet/ssoins-1/ps-1",
                       "userId": "u-1"}),
            ),
            (
                Call::ProvisionedAccounts {
                    permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
                },
                json!({"op": "provisionedAccounts",
                       "permissionSetArn": "arn:aws:sso:::permissionSet/ssoins-1/ps-1"}),
            ),
        ];
        for (call, wire) in cases {
            assert_eq!(serde_json::to_value(&call).unwrap(), wire);
            assert_eq!(serde_json::from_value::<Call>(wire).unwrap(), call);
        }
        // Unknown fields and operations are refused, not ignored.
        assert!(
            serde_json::from_value::<Call>(json!({"op": "userId", "user": "a", "x": 1})).is_err()
        );
        assert!(serde_json::from_value::<Call>(json!({"op": "deleteEverything"})).is_err());
    }

    #[test]
    fn the_mode_is_explicit() {
        assert_eq!(Mode::parse(Some("assignments")), Ok(Mode::Assignments));
        assert_eq!(Mode::parse(Some("directory")), Ok(Mode::Directory));
        assert!(Mode::parse(None).unwrap_err().contains(MODE_VAR));
        assert!(Mode::parse(Some("all")).unwrap_err().contains("`all`"));
    }
}
