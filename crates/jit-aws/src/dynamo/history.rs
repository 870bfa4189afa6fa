//! The admin listing and audit events by time, on indexes (never a scan).
//!
//! - `allRequests` (requests table): hash `entity` (`"request"` on request
//!   items only), range `requestId`. One index partition for every request,
//!   as `byStatus` holds every request of one status: fine at an access
//!   broker's volume. Items TTL deleted leave it (their history stays in
//!   the audit table: `GET /requests/{id}` rebuilds them).
//! - `byDay` (audit table): hash `day` (the event's UTC `YYYY-MM-DD`), range
//!   `eventId` (a ULID of the event's time). A range is read one day at a
//!   time with the ids' time bounds as the key condition. Events written
//!   before the index existed carry no `day` and are not in it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, NaiveTime};
use jit_core::ports::{MAX_EVENT_PAGE, Page, PageRequest, RequestFilter, StoreError};
use jit_core::request::{AccessRequest, AuditEvent, Timestamp};
use jit_core::trail::id_bounds;

use super::cursor::Listing;
use super::item::{REQUEST_ENTITY, RequestItem, attr, redact};
use super::{
    ALL_REQUESTS_INDEX, BY_DAY_INDEX, BY_REQUESTER_INDEX, BY_STATUS_INDEX, DynamoStore, Item,
};
use crate::error::describe;

/// An event's UTC day, the `byDay` hash key.
pub(crate) fn day(at: Timestamp) -> String {
    at.format("%Y-%m-%d").to_string()
}

fn start_of_day(at: Timestamp) -> Timestamp {
    at.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// Where the next page of events starts: the last event returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct EventCursor {
    d: String,
    e: String,
    r: String,
}

impl EventCursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(c: &str) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(c)
            .map_err(|_| StoreError::InvalidCursor)?;
        let cur: EventCursor =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
        if jit_core::RequestId::parse(cur.e.as_str()).is_err()
            || chrono::NaiveDate::parse_from_str(&cur.d, "%Y-%m-%d").is_err()
        {
            return Err(StoreError::InvalidCursor);
        }
        Ok(cur)
    }

    fn start_key(&self) -> Item {
        HashMap::from([
            (attr::DAY.to_string(), AttributeValue::S(self.d.clone())),
            (
                attr::EVENT_ID.to_string(),
                AttributeValue::S(self.e.clone()),
            ),
            (
                attr::REQUEST_ID.to_string(),
                AttributeValue::S(self.r.clone()),
            ),
        ])
    }
}

impl DynamoStore {
    pub(super) async fn list_filtered(
        &self,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        let status = filter.status.map(|s| s.as_str().to_string());
        let requester = filter.requester.as_ref().map(|p| p.as_str().to_string());
        let listing = match (&status, &requester) {
            (Some(s), _) => Listing {
                index: BY_STATUS_INDEX,
                hash_attr: attr::STATUS,
                hash_value: s,
            },
            (None, Some(p)) => Listing {
                index: BY_REQUESTER_INDEX,
                hash_attr: attr::REQUESTER,
                hash_value: p,
            },
            (None, None) => Listing {
                index: ALL_REQUESTS_INDEX,
                hash_attr: attr::ENTITY,
                hash_value: REQUEST_ENTITY,
            },
        };
        let mut key = "#h = :h".to_string();
        let mut names = HashMap::from([("#h".to_string(), listing.hash_attr.to_string())]);
        let mut values = HashMap::from([(
            ":h".to_string(),
            AttributeValue::S(listing.hash_value.to_string()),
        )]);
        let lo = filter.from.map(|f| id_bounds(f).0);
        let hi = filter
            .to
            .map(|t| id_bounds(t - Duration::milliseconds(1)).1);
        match (lo, hi) {
            (Some(lo), Some(hi)) => {
                key.push_str(" AND #id BETWEEN :lo AND :hi");
                values.insert(":lo".into(), AttributeValue::S(lo));
                values.insert(":hi".into(), AttributeValue::S(hi));
            }
            (Some(lo), None) => {
                key.push_str(" AND #id >= :lo");
                values.insert(":lo".into(), AttributeValue::S(lo));
            }
            (None, Some(hi)) => {
                key.push_str(" AND #id <= :hi");
                values.insert(":hi".into(), AttributeValue::S(hi));
            }
            (None, None) => {}
        }
        if key.contains("#id") {
            names.insert("#id".into(), attr::REQUEST_ID.into());
        }
        let mut filters = Vec::new();
        if let (Some(_), Some(p)) = (&status, &requester) {
            filters.push("#req = :req");
            names.insert("#req".into(), attr::REQUESTER.into());
            values.insert(":req".into(), AttributeValue::S(p.clone()));
        }
        if let Some(e) = &filter.entitlement {
            filters.push("#rec.#ent = :ent");
            names.insert("#rec".into(), "record".into());
            names.insert("#ent".into(), "entitlement".into());
            values.insert(":ent".into(), AttributeValue::S(e.clone()));
        }
        let filter_expr = (!filters.is_empty()).then(|| filters.join(" AND "));

        let mut start = match &page.cursor {
            Some(cursor) => Some(listing.decode(cursor)?),
            None => None,
        };
        let mut items = Vec::with_capacity(limit + 1);
        loop {
            let want = limit + 1 - items.len();
            let out = self
                .client
                .query()
                .table_name(&self.tables.requests)
                .index_name(listing.index)
                .key_condition_expression(&key)
                .set_filter_expression(filter_expr.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(want.max(if filter_expr.is_some() { 100 } else { 1 }) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Backend(describe("Query(list_all)", &e)))?;
            for item in out.items.unwrap_or_default() {
                items.push(RequestItem::from_item(item)?.record);
            }
            match out.last_evaluated_key {
                Some(key) if items.len() <= limit => start = Some(key),
                _ => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            Some(listing.encode(&items[limit - 1].request_id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub(super) async fn events_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let limit = page.limit.clamp(1, MAX_EVENT_PAGE) as usize;
        let resume = page
            .cursor
            .as_deref()
            .map(EventCursor::decode)
            .transpose()?;
        let mut items: Vec<(AuditEvent, String)> = Vec::with_capacity(limit + 1);
        if from >= to {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        }
        let last = to - Duration::milliseconds(1);
        let mut day_start = start_of_day(from);
        let mut start: Option<Item> = None;
        if let Some(c) = &resume {
            let d = chrono::NaiveDate::parse_from_str(&c.d, "%Y-%m-%d")
                .map_err(|_| StoreError::InvalidCursor)?
                .and_time(NaiveTime::MIN)
                .and_utc();
            if d < day_start || d > last {
                return Err(StoreError::InvalidCursor);
            }
            day_start = d;
            start = Some(c.start_key());
        }
        'days: while day_start <= last && items.len() <= limit {
            let lo = id_bounds(from.max(day_start)).0;
            let hi =
                id_bounds(last.min(day_start + Duration::days(1) - Duration::milliseconds(1))).1;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.tables.audit)
                    .index_name(BY_DAY_INDEX)
                    .key_condition_expression("#d = :d AND #e BETWEEN :lo AND :hi")
                    .expression_attribute_names("#d", attr::DAY)
                    .expression_attribute_names("#e", attr::EVENT_ID)
                    .expression_attribute_values(":d", AttributeValue::S(day(day_start)))
                    .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                    .expression_attribute_values(":hi", AttributeValue::S(hi.clone()))
                    .scan_index_forward(true)
                    .limit((limit + 1 - items.len()) as i32)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| StoreError::Backend(describe("Query(byDay)", &e)))?;
                for item in out.items.unwrap_or_default() {
                    let event: AuditEvent = serde_dynamo::aws_sdk_dynamodb_1::from_item(item)
                        .map_err(|e| {
                            StoreError::Backend(format!("decoding audit event: {}", redact(&e)))
                        })?;
                    if event.at >= from && event.at < to {
                        items.push((event, day(day_start)));
                    }
                }
                if items.len() > limit {
                    break 'days;
                }
                match out.last_evaluated_key {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
            day_start += Duration::days(1);
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(e, d)| {
                EventCursor {
                    d: d.clone(),
                    e: e.event_id.clone(),
                    r: e.request_id.to_string(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page {
            items: items.into_iter().map(|(e, _)| e).collect(),
            next_cursor,
        })
    }
}
