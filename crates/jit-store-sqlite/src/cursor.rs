//! Opaque page cursors: base64url of the last request id a page returned.
//!
//! Opaque so clients cannot build one by hand and so the encoding can change;
//! checked on the way back in so a forged cursor is a clear `InvalidCursor`
//! rather than a query over whatever it happens to contain.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jit_core::RequestId;
use jit_core::ports::StoreError;

pub(crate) fn encode(last: &RequestId) -> String {
    URL_SAFE_NO_PAD.encode(last.as_str())
}

pub(crate) fn decode(cursor: &str) -> Result<RequestId, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
    RequestId::parse(text).map_err(|_| StoreError::InvalidCursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_hides_the_id() {
        let id = RequestId::generate(chrono::Utc::now());
        let c = encode(&id);
        assert_ne!(c, id.as_str());
        assert_eq!(decode(&c).unwrap(), id);
    }

    #[test]
    fn anything_else_is_invalid() {
        let id = RequestId::generate(chrono::Utc::now());
        let cases = [
            String::new(),
            "not base64!".into(),
            URL_SAFE_NO_PAD.encode("not-a-ulid"),
            URL_SAFE_NO_PAD.encode(id.as_str().to_lowercase()),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0xfd]),
            format!("{}=", encode(&id)),
            id.to_string(),
        ];
        for c in cases {
            assert!(
                matches!(decode(&c), Err(StoreError::InvalidCursor)),
                "{c:?} was accepted"
            );
        }
    }
}
