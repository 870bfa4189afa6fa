//! Opaque pagination cursors.
//!
//! A cursor is the index key of the last item of a page — what DynamoDB
//! calls the `LastEvaluatedKey` and takes back as `ExclusiveStartKey` —
//! as base64url (no padding) JSON: `{"requestId": …, "<hashAttr>": …}`.
//! Decoding checks everything, so a cursor the store never issued (or one
//! issued for another listing) is `InvalidCursor`, never a backend error or
//! a silently wrong page.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jit_core::RequestId;
use jit_core::ports::StoreError;

use super::item::attr;

/// The index a listing walks: its hash attribute and the value listed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing<'a> {
    pub index: &'static str,
    pub hash_attr: &'static str,
    pub hash_value: &'a str,
}

impl Listing<'_> {
    /// The cursor that continues after the item with `request_id`.
    pub fn encode(&self, request_id: &RequestId) -> String {
        let key: BTreeMap<&str, &str> = [
            (attr::REQUEST_ID, request_id.as_str()),
            (self.hash_attr, self.hash_value),
        ]
        .into_iter()
        .collect();
        let json = serde_json::to_vec(&key).expect("a map of strings always serialises");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The `ExclusiveStartKey` a cursor stands for, if this listing issued it.
    pub fn decode(&self, cursor: &str) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| StoreError::InvalidCursor)?;
        let key: BTreeMap<String, String> =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
        let request_id = key
            .get(attr::REQUEST_ID)
            .and_then(|id| RequestId::parse(id.as_str()).ok())
            .ok_or(StoreError::InvalidCursor)?;
        if key.len() != 2 || key.get(self.hash_attr).map(String::as_str) != Some(self.hash_value) {
            return Err(StoreError::InvalidCursor);
        }
        Ok(HashMap::from([
            (
                attr::REQUEST_ID.to_string(),
                AttributeValue::S(request_id.to_string()),
            ),
            (
                self.hash_attr.to_string(),
                AttributeValue::S(self.hash_value.to_string()),
            ),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BY_ALICE: Listing<'static> = Listing {
        index: "byRequester",
        hash_attr: attr::REQUESTER,
        hash_value: "alice@example.com",
    };

    #[test]
    fn a_cursor_decodes_to_the_key_it_was_made_from() {
        // GIVEN a cursor issued after some request
        let id = RequestId::generate(chrono::Utc::now());
        let cursor = BY_ALICE.encode(&id);

        // WHEN it is decoded by the same listing
        let key = BY_ALICE.decode(&cursor).expect("valid cursor");

        // THEN it is that request's index key, and the cursor is URL-safe
        assert_eq!(key["requestId"], AttributeValue::S(id.to_string()));
        assert_eq!(
            key["requester"],
            AttributeValue::S("alice@example.com".into())
        );
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn cursors_from_elsewhere_are_invalid() {
        let id = RequestId::generate(chrono::Utc::now());
        let by_bob = Listing {
            hash_value: "bob@example.com",
            ..BY_ALICE
        };
        let by_status = Listing {
            index: "byStatus",
            hash_attr: attr::STATUS,
            hash_value: "REQUESTED",
        };
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let cases = [
            ("another requester's", by_bob.encode(&id)),
            ("another index's", by_status.encode(&id)),
            ("empty", String::new()),
            ("not base64", "%%%".into()),
            ("padded base64", format!("{}=", BY_ALICE.encode(&id))),
            ("not JSON", b64("hello")),
            ("wrong keys", b64(r#"{"not":"yours"}"#)),
            (
                "bad request id",
                b64(r#"{"requestId":"x","requester":"alice@example.com"}"#),
            ),
            (
                "extra key",
                b64(&format!(
                    r#"{{"requestId":"{id}","requester":"alice@example.com","x":"y"}}"#
                )),
            ),
            ("non-string value", b64(r#"{"requestId":1}"#)),
        ];
        for (what, cursor) in cases {
            assert!(
                matches!(BY_ALICE.decode(&cursor), Err(StoreError::InvalidCursor)),
                "{what} cursor {cursor:?} was accepted"
            );
        }
    }
}
