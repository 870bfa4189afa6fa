//! The plumbing every task Lambda shares, so each binary is a few lines:
//! configuration read and validated once at init, the task dependencies
//! built from one `SdkConfig`, task errors turned into the stable
//! `errorType`s `state-machine/approval.asl.json` matches, and the DynamoDB
//! stream decoding the `expire` Lambda needs.
//!
//! Nothing here decides anything: decisions live in `jit_core::tasks`.
//! Nothing here logs a payload: payloads can carry task tokens.

pub mod approvals;
pub mod logging;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jit_core::ports::{ApprovalNotice, Notifier, NotifyError, SystemClock};
use jit_core::tasks::{TaskError, Tasks};
use jit_core::{AccessRequest, Catalog};
use lambda_runtime::Diagnostic;
use serde_json::{Map, Value};

/// A task error as the Lambda runtime reports it: `errorType` is the stable
/// name the state machine's `Retry`/`Catch` match.
#[derive(Debug)]
pub struct TaskFailure(pub TaskError);

impl From<TaskError> for TaskFailure {
    fn from(e: TaskError) -> Self {
        TaskFailure(e)
    }
}

impl From<TaskFailure> for Diagnostic {
    fn from(f: TaskFailure) -> Diagnostic {
        Diagnostic {
            error_type: f.0.error_type().to_string(),
            error_message: f.0.to_string(),
        }
    }
}

/// The task Lambdas' configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskConfig {
    pub table: String,
    pub audit_table: String,
    /// `JIT_LEDGER_TABLE`: the grant ledger (every IAM change, before and
    /// after the call; see `jit_core::ledger`).
    pub ledger_table: String,
    pub catalog_path: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl TaskConfig {
    /// Reads the configuration through `get` (the environment in `main`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<TaskConfig, ConfigError> {
        let table = |var: &'static str, default: &str| -> Result<String, ConfigError> {
            let name = get(var).unwrap_or_else(|| default.to_string());
            if (3..=255).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                Ok(name)
            } else {
                Err(ConfigError {
                    var,
                    message: format!("`{name}` is not a DynamoDB table name"),
                })
            }
        };
        Ok(TaskConfig {
            table: table("JIT_TABLE", "JITAccessRequests")?,
            audit_table: table("JIT_AUDIT_TABLE", "JITAccessAudit")?,
            ledger_table: table("JIT_LEDGER_TABLE", jit_aws::DEFAULT_LEDGER_TABLE)?,
            catalog_path: PathBuf::from(
                get("JIT_CATALOG").unwrap_or_else(|| "/opt/catalog.yaml".into()),
            ),
        })
    }
}

/// Reads and parses the catalog, naming the file in any error.
pub fn load_catalog(path: &std::path::Path) -> Result<Catalog, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("JIT_CATALOG: cannot read {}: {e}", path.display()))?;
    Catalog::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())
}

/// Builds the task dependencies on AWS from the environment. Called once,
/// at init.
pub async fn tasks_from_env() -> Result<Tasks, lambda_runtime::Error> {
    let cfg = TaskConfig::from_lookup(|k| std::env::var(k).ok())?;
    let catalog = load_catalog(&cfg.catalog_path)?;
    let sdk = jit_aws::sdk::lambda_config();
    let clock = Arc::new(SystemClock);
    Ok(Tasks {
        store: Arc::new(jit_aws::DynamoStore::from_config(
            &sdk,
            jit_aws::TableNames::new(cfg.table, cfg.audit_table),
        )),
        clock: clock.clone(),
        issuer: Arc::new(jit_aws::StsIssuer::from_config(&sdk)),
        iam: with_identity_center(grant_iam(&sdk, &cfg.ledger_table, clock), &sdk, &catalog),
        catalog: Arc::new(catalog),
        notifier: Arc::new(LogNotifier),
    })
}

/// Permission-set grants: when the catalog names an Identity Center
/// instance, the task functions (`assume-role`, `update-status`, `expire`)
/// make and remove assignments by invoking the `identity-center` function
/// named by `JIT_IDENTITY_CENTER_FUNCTION` (they link no Identity Center
/// client: size). Without the variable, a permission-set step fails loudly
/// (`GrantFailed`, "no Identity Center adapter") and says why at init.
fn with_identity_center(
    iam: jit_core::ledger::GrantIam,
    sdk: &jit_aws::SdkConfig,
    catalog: &Catalog,
) -> jit_core::ledger::GrantIam {
    if catalog.identity_center().is_none() {
        return iam;
    }
    match identity_center_function() {
        Some(function) => iam.with_assignments(Arc::new(
            jit_aws::LambdaIdentityCenter::from_config(sdk, function),
        )),
        None => {
            tracing::warn!(
                "the catalog names an Identity Center instance but JIT_IDENTITY_CENTER_FUNCTION is not set: permission-set grants fail (deploy with IdentityCenterInstanceArn)"
            );
            iam
        }
    }
}

/// `JIT_IDENTITY_CENTER_FUNCTION`: the `identity-center` function this one
/// may invoke (the `assignments` one for the task functions, the
/// `directory` one for the HTTP API functions).
pub fn identity_center_function() -> Option<String> {
    std::env::var(jit_aws::identity_center_fn::FUNCTION_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The HTTP API functions' catalog with its `idc:` groups readable: when
/// the catalog's rules name any and `JIT_IDENTITY_CENTER_FUNCTION` is set,
/// memberships are read through the `directory` function and cached per
/// person for the catalog's `identity_center.group_cache`. Otherwise the
/// catalog is returned as is (a rule naming `idc:` groups then answers
/// `503 directory_unavailable`, and init says why).
pub fn with_group_directory(catalog: Catalog, sdk: &jit_aws::SdkConfig) -> Catalog {
    let Some(idc) = catalog.identity_center() else {
        return catalog;
    };
    if !catalog.uses_idc_groups() {
        return catalog;
    }
    let ttl = idc.group_cache_secs;
    match identity_center_function() {
        Some(function) => {
            catalog.with_group_directory(Arc::new(jit_core::identity_center::CachedGroups::new(
                Arc::new(jit_aws::LambdaIdentityCenter::from_config(sdk, function)),
                Arc::new(SystemClock),
                ttl,
            )))
        }
        None => {
            tracing::warn!(
                "the catalog's rules name idc: groups but JIT_IDENTITY_CENTER_FUNCTION is not set: those rules answer 503 directory_unavailable (deploy with IdentityCenterInstanceArn)"
            );
            catalog
        }
    }
}

/// The broker the scheduled sweep's workflow reconcile pass needs
/// (`Broker::recover_workflows`): the task dependencies' store and catalog
/// with the state machine named by `JIT_STATE_MACHINE_ARN`. `None` when the
/// variable is unset (the pass is then skipped, and says so in the log).
pub fn recovery_broker_from_env(
    tasks: &Tasks,
) -> Result<Option<jit_core::Broker>, lambda_runtime::Error> {
    let Some(arn) = std::env::var("JIT_STATE_MACHINE_ARN")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let arn =
        jit_aws::StateMachineArn::parse(arn).map_err(|e| format!("JIT_STATE_MACHINE_ARN: {e}"))?;
    // The same setting the request Lambda starts workflows with, so a
    // start repeated here sends the same input.
    let demo_mode = match std::env::var("JIT_DEMO_MODE").ok().as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!("JIT_DEMO_MODE: `{other}` must be true or false").into());
        }
    };
    let sdk = jit_aws::sdk::lambda_config();
    Ok(Some(jit_core::Broker {
        store: tasks.store.clone(),
        workflow: Arc::new(jit_aws::SfnWorkflow::from_config(&sdk, arn)),
        catalog: tasks.catalog.clone(),
        clock: tasks.clock.clone(),
        settings: jit_core::service::Settings { demo_mode },
        grants: None,
        policy: None,
    }))
}

/// IAM through the grant ledger on `ledger_table`: how every Lambda that
/// changes IAM holds it. (Only `expire` adds the IAM listing the
/// reconciler uses, so the others do not link those calls.)
pub fn grant_iam(
    sdk: &jit_aws::SdkConfig,
    ledger_table: &str,
    clock: Arc<dyn jit_core::ports::Clock>,
) -> jit_core::ledger::GrantIam {
    jit_core::ledger::GrantIam::new(
        Arc::new(jit_aws::IamAttacher::from_config(sdk)),
        Arc::new(jit_aws::IamRoleRevoker::from_config(sdk)),
        Arc::new(jit_aws::DynamoLedger::from_config(sdk, ledger_table)),
        clock,
    )
}

/// Records approval notices in the structured log (request id, approvers,
/// channel; never the token). Slack and email replace it with the approvals
/// work.
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn approval_requested(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        let emails: Vec<&str> = n.approvers.emails.iter().map(|e| e.as_str()).collect();
        tracing::info!(
            request_id = %n.request.request_id,
            entitlement = %n.request.entitlement,
            requester = %n.request.requester.principal,
            approver_emails = ?emails,
            approver_groups = ?n.approvers.groups,
            slack_channel = ?n.approvers.slack_channel,
            deadline = %n.deadline,
            "approval requested"
        );
        Ok(())
    }

    async fn decided(&self, r: &AccessRequest) -> Result<(), NotifyError> {
        tracing::info!(request_id = %r.request_id, status = %r.status, "decided");
        Ok(())
    }
}

/// DynamoDB's typed JSON (`{"S": "x"}`, `{"N": "1"}`, `{"M": {…}}`, …) as
/// plain JSON, for decoding stream images with serde.
pub fn from_dynamodb_json(v: &Value) -> Result<Value, String> {
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or("an attribute value has exactly one type key")?;
    let (ty, inner) = obj.iter().next().expect("one entry");
    Ok(match (ty.as_str(), inner) {
        ("S", Value::String(s)) => Value::String(s.clone()),
        ("N", Value::String(n)) => serde_json::from_str::<serde_json::Number>(n)
            .map(Value::Number)
            .map_err(|_| format!("`{n}` is not a number"))?,
        ("BOOL", Value::Bool(b)) => Value::Bool(*b),
        ("NULL", _) => Value::Null,
        ("M", Value::Object(m)) => Value::Object(image_to_json(m)?),
        ("L", Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(from_dynamodb_json)
                .collect::<Result<_, _>>()?,
        ),
        ("SS", Value::Array(items)) => Value::Array(items.clone()),
        ("NS", Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|n| {
                    n.as_str()
                        .and_then(|n| serde_json::from_str::<serde_json::Number>(n).ok())
                        .map(Value::Number)
                        .ok_or("a bad number in NS")
                })
                .collect::<Result<_, _>>()?,
        ),
        (other, _) => return Err(format!("unsupported attribute type `{other}`")),
    })
}

/// A stream image (a map of attribute values) as a plain JSON object.
pub fn image_to_json(image: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    image
        .iter()
        .map(|(k, v)| Ok((k.clone(), from_dynamodb_json(v)?)))
        .collect()
}

/// The requests DynamoDB's TTL removed, from a stream event: `REMOVE`
/// records made by the DynamoDB service itself (not a user's delete), with
/// their old image decoded.
/// The audit events a stream batch of the audit table inserted (its
/// `NEW_IMAGE`s): what the `audit-export` Lambda writes to S3. Events are
/// append-only, so only `INSERT` records count.
pub fn audit_inserts(event: &Value) -> Result<Vec<jit_core::AuditEvent>, String> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("not a stream event: no Records")?;
    let mut out = vec![];
    for r in records {
        if r.get("eventName").and_then(Value::as_str) != Some("INSERT") {
            continue;
        }
        let Some(new) = r.pointer("/dynamodb/NewImage").and_then(Value::as_object) else {
            continue;
        };
        let plain = image_to_json(new)?;
        out.push(
            serde_json::from_value(Value::Object(plain))
                .map_err(|e| format!("decoding an inserted audit event: {e}"))?,
        );
    }
    Ok(out)
}

pub fn ttl_removals(event: &Value) -> Result<Vec<AccessRequest>, String> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("not a stream event: no Records")?;
    let mut out = vec![];
    for r in records {
        if r.get("eventName").and_then(Value::as_str) != Some("REMOVE") {
            continue;
        }
        let by_ttl = r.get("userIdentity").is_some_and(|u| {
            u.get("type").and_then(Value::as_str) == Some("Service")
                && u.get("principalId").and_then(Value::as_str) == Some("dynamodb.amazonaws.com")
        });
        if !by_ttl {
            continue;
        }
        let Some(old) = r.pointer("/dynamodb/OldImage").and_then(Value::as_object) else {
            continue;
        };
        let plain = image_to_json(old)?;
        // Idempotency and seen-once markers share the table; they carry no record.
        let Some(record) = plain.get("record") else {
            continue;
        };
        let request: AccessRequest = serde_json::from_value(record.clone())
            .map_err(|e| format!("decoding the removed record: {e}"))?;
        out.push(request);
    }
    Ok(out)
}
