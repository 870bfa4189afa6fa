//! `GET /requests?scope=all` (admins) and `GET /analytics` (admins, and
//! approvers for their entitlements).

use http::StatusCode;
use jit_core::ports::{PageRequest, RequestFilter};
use jit_core::request::Timestamp;
use jit_core::{Broker, Caller, Principal, Status};
use serde_json::{Value, json};

use crate::{ApiError, ApiRequest, invalid, json_response, parse_query, request_view};

/// An instant from a query parameter: RFC 3339, or a day (`2027-01-15`,
/// midnight UTC).
pub(crate) fn parse_instant(field: &str, v: &str) -> Result<Timestamp, ApiError> {
    jit_core::reports::parse_instant(v).ok_or_else(|| {
        invalid(
            field,
            "must be an RFC 3339 time (2027-01-15T08:00:00Z) or a day (2027-01-15)",
        )
    })
}

/// Whether a listing asks for the admin view.
pub(crate) fn wants_all(req: &ApiRequest) -> Result<bool, ApiError> {
    let params = parse_query(req.query.as_deref().unwrap_or(""))?;
    match params.iter().find(|(k, _)| k == "scope") {
        None => Ok(false),
        Some((_, v)) if v == "all" => Ok(true),
        Some((_, v)) if v == "mine" => Ok(false),
        Some(_) => Err(invalid("scope", "must be `all` (admins) or `mine`")),
    }
}

/// `GET /requests?scope=all&status=&entitlement=&requester=&from=&to=&limit=&cursor=`.
pub(crate) async fn list_all(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<http::Response<String>, ApiError> {
    let params = parse_query(req.query.as_deref().unwrap_or(""))?;
    let mut filter = RequestFilter::default();
    let mut page = PageRequest::default();
    for (k, v) in &params {
        match k.as_str() {
            "scope" => {}
            "status" => {
                filter.status = Some(v.parse::<Status>().map_err(|m| invalid("status", m))?)
            }
            "entitlement" => filter.entitlement = Some(v.clone()),
            "requester" => {
                filter.requester =
                    Some(Principal::parse(v.clone()).map_err(|e| invalid("requester", e.0))?)
            }
            "from" => filter.from = Some(parse_instant("from", v)?),
            "to" => filter.to = Some(parse_instant("to", v)?),
            "limit" => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| invalid("limit", "must be a whole number"))?;
                if !(1..=PageRequest::MAX_LIMIT).contains(&n) {
                    return Err(invalid(
                        "limit",
                        format!("must be between 1 and {}", PageRequest::MAX_LIMIT),
                    ));
                }
                page.limit = n;
            }
            "cursor" => page.cursor = Some(v.clone()),
            other => {
                return Err(invalid(
                    other,
                    "is not a query parameter; with scope=all use status, entitlement, requester, from, to, limit, cursor",
                ));
            }
        }
    }
    let found = broker.list_all(caller, &filter, &page).await?;
    let now = broker.clock.now();
    let items: Vec<Value> = found.items.iter().map(|r| request_view(r, now)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "requests": items, "nextCursor": found.next_cursor }),
    ))
}

/// `GET /analytics?from=&to=`; the range defaults to the 30 days before now.
pub(crate) async fn analytics(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<http::Response<String>, ApiError> {
    let params = parse_query(req.query.as_deref().unwrap_or(""))?;
    let (mut from, mut to) = (None, None);
    for (k, v) in &params {
        match k.as_str() {
            "from" => from = Some(parse_instant("from", v)?),
            "to" => to = Some(parse_instant("to", v)?),
            other => return Err(invalid(other, "is not a query parameter; use from, to")),
        }
    }
    let to = to.unwrap_or_else(|| broker.clock.now());
    let from = from.unwrap_or_else(|| jit_core::reports::default_from(to));
    let report = broker.analytics(caller, from, to).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(&report).unwrap_or(Value::Null),
    ))
}

/// `GET /audit?from=&to=&action=&limit=&cursor=` (admins): the trail by
/// time; `action=rejected` lists refused attempts. The range defaults to
/// the 30 days before now.
pub(crate) async fn audit(
    broker: &Broker,
    caller: &Caller,
    req: &ApiRequest,
) -> Result<http::Response<String>, ApiError> {
    let params = parse_query(req.query.as_deref().unwrap_or(""))?;
    let (mut from, mut to, mut action) = (None, None, None);
    let mut page = PageRequest::default();
    for (k, v) in &params {
        match k.as_str() {
            "from" => from = Some(parse_instant("from", v)?),
            "to" => to = Some(parse_instant("to", v)?),
            "action" => {
                action = Some(
                    serde_json::from_value(Value::String(v.clone())).map_err(|_| {
                        invalid(
                            "action",
                            "must be an audit action: created, transition, rejected, decision, note, credentials-issued, console-signin, extension, usage",
                        )
                    })?,
                )
            }
            "limit" => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| invalid("limit", "must be a whole number"))?;
                if !(1..=PageRequest::MAX_LIMIT).contains(&n) {
                    return Err(invalid(
                        "limit",
                        format!("must be between 1 and {}", PageRequest::MAX_LIMIT),
                    ));
                }
                page.limit = n;
            }
            "cursor" => page.cursor = Some(v.clone()),
            other => {
                return Err(invalid(
                    other,
                    "is not a query parameter; use from, to, action, limit, cursor",
                ));
            }
        }
    }
    let to = to.unwrap_or_else(|| broker.clock.now());
    let from = from.unwrap_or_else(|| jit_core::reports::default_from(to));
    let found = broker
        .audit_between(caller, from, to, action, &page)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "events": crate::events_view(&found.items), "nextCursor": found.next_cursor }),
    ))
}
