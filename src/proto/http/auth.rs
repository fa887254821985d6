//! Bearer-token checks that leak neither the token nor its length through
//! timing: both sides are hashed to fixed-size digests, which are compared
//! without an early exit.

use sha1::{Digest, Sha1};

/// Whether an `Authorization` header value is `Bearer <token>`.
///
/// The comparison runs over SHA-1 digests of the whole expected and given
/// values, so its time depends only on the length of what the caller sent
/// (which the caller knows), never on how much of the token matched or on
/// the token's own length.
pub(crate) fn bearer_matches(given: Option<&[u8]>, token: &str) -> bool {
    let given = given.unwrap_or_default();
    let mut expected = Sha1::new();
    expected.update(b"Bearer ");
    expected.update(token.as_bytes());
    let expected = expected.finalize();
    let given = Sha1::digest(given);
    constant_time_eq(&expected, &given)
}

/// Compares two byte strings of the same length without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_matches;

    #[test]
    fn only_the_exact_bearer_value_matches() {
        assert!(bearer_matches(Some(b"Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some(b"Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some(b"Bearer s3cret!"), "s3cret"));
        assert!(!bearer_matches(Some(b"bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some(b"s3cret"), "s3cret"));
        assert!(!bearer_matches(Some(b""), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
        assert!(!bearer_matches(None, ""));
        assert!(bearer_matches(Some(b"Bearer "), ""));
    }
}
