//! `GET /entitlements`: the catalog entries the caller may request, with
//! what a requester needs to choose (bounds, who approves, whether it is
//! approved at once).

use http::{Response, StatusCode};
use jit_core::catalog::Entitlement;
use jit_core::entitlements::Requestable;
use jit_core::request::GrantTarget;
use jit_core::{Broker, Caller};
use serde_json::{Value, json};

use crate::{ApiError, ApiRequest, invalid, json_response, parse_query};

pub(crate) async fn list(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<Response<String>, ApiError> {
    let mut on_behalf = None;
    for (k, v) in parse_query(req.query.as_deref().unwrap_or(""))? {
        match k.as_str() {
            "requester" => on_behalf = Some(v),
            other => {
                return Err(invalid(
                    other,
                    "is not a query parameter; use requester (trusted callers only)",
                ));
            }
        }
    }
    let items: Vec<Value> = broker
        .requestable(caller, on_behalf.as_deref())
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "entitlements": items }),
    ))
}

/// Durations are seconds, as in requests; approvers are summarised (who,
/// how many), never the Slack ids behind them.
fn view(r: &Requestable<'_>) -> Value {
    let e: &Entitlement = r.entitlement;
    let mut v = json!({
        "name": e.name,
        "description": e.description,
        "accountId": e.account.as_str(),
        "minDuration": e.min_duration.secs(),
        "maxDuration": e.max_duration.secs(),
        "defaultDuration": e.default_duration.secs(),
        "approvalTimeout": e.approval_timeout_secs,
        "eligibleGroups": e.eligible_groups,
        "approvers": {
            "emails": e.approvers.emails.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "groups": e.approvers.groups,
            "requiredApprovals": e.approvers.required_approvals,
            "requiredGroups": e.approvers.required_groups,
            "slackChannel": e.approvers.slack_channel,
        },
        "autoApprove": e.auto_approve.as_ref().map(|a| json!({
            "groups": a.groups,
            "maxDuration": a.max_duration.secs(),
        })),
    });
    match &e.target {
        GrantTarget::AssumeRole { role_arn } => {
            v["grantMode"] = json!("assume-role");
            v["roleArn"] = json!(role_arn.as_str());
        }
        GrantTarget::AttachPolicy { policy_name } => {
            v["grantMode"] = json!("attach-policy");
            v["policyName"] = json!(policy_name.as_str());
        }
        GrantTarget::PermissionSet {
            permission_set,
            accounts,
        } => {
            v["grantMode"] = json!("permission-set");
            v["permissionSet"] = json!(permission_set);
            v["accounts"] = json!(accounts);
        }
    }
    if let Some(auto) = r.auto_approved_for_you {
        v["autoApprovedForYou"] = json!(auto);
    }
    v
}
