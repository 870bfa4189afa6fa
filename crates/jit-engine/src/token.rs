//! Task tokens: 256 random bits, base64url. Opaque, unguessable, and never
//! logged (only the history's `TaskScheduled` parameters carry one, as on
//! AWS, because the definition puts it there).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::EngineError;

pub(crate) fn generate() -> Result<String, EngineError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| EngineError::Internal(format!("random source: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// AWS accepts tokens of 1 to 2048 characters; ours are base64url.
pub(crate) fn well_formed(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 2048
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// A uniform number in [0, 1), for full jitter.
pub(crate) fn unit() -> Result<f64, EngineError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| EngineError::Internal(format!("random source: {e}")))?;
    Ok((u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_distinct_and_well_formed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43); // 256 bits
        assert!(well_formed(&a));
        assert!(!well_formed(""));
        assert!(!well_formed("has space"));
        assert!(!well_formed(&"a".repeat(2049)));
        let u = unit().unwrap();
        assert!((0.0..1.0).contains(&u));
    }
}
