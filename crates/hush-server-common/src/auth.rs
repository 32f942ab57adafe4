//! `[AUTH]` passwords of the server configuration files.

use std::fmt;

/// A password from `[AUTH]` (`create_password`, control port passwords): printable ASCII without
/// whitespace, `@`, `:` and `/`, 1..=255 bytes (reference §2.1). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth(hush_proto::address::BasicAuth);

impl BasicAuth {
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("password is empty".into());
        }
        if s.len() > 255 {
            return Err(format!(
                "password is {} bytes, at most 255 allowed",
                s.len()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '@' | ':' | '/'))
        {
            return Err(format!(
                "password contains {c:?}; only printable ASCII without whitespace, '@', ':' and '/' is allowed"
            ));
        }
        hush_proto::address::BasicAuth::new(s)
            .map(BasicAuth)
            .map_err(|e| format!("invalid password: {e}"))
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    /// The protocol type (what `NEW`/`PRXY` carry), for the relay core to compare against.
    pub fn as_proto(&self) -> &hush_proto::address::BasicAuth {
        &self.0
    }
    /// Constant-time comparison (the control ports compare typed passwords with this). The length
    /// is not hidden, as in `hush_crypto::ct_eq` (used directly via `subtle` so that servers that
    /// need no cryptography do not build hush-crypto).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let own = self.as_str().as_bytes();
        own.len() == candidate.len() && bool::from(own.ct_eq(candidate))
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicAuth(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_ascii_and_matches_only_itself() {
        let p = BasicAuth::new("s3cret-Pa$$!").unwrap();
        assert_eq!(p.as_str(), "s3cret-Pa$$!");
        assert_eq!(p.as_proto().as_str(), "s3cret-Pa$$!");
        assert!(p.matches(b"s3cret-Pa$$!"));
        assert!(!p.matches(b"s3cret-Pa$$"));
        assert!(!p.matches(b"s3cret-Pa$$!!"));
        assert!(!p.matches(b"S3cret-Pa$$!"));
        assert!(!p.matches(b""));
        assert!(BasicAuth::new(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_bad_passwords_with_a_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("a b", "' '"),
            ("a@b", "'@'"),
            ("a:b", "':'"),
            ("a/b", "'/'"),
            ("tab\there", "'\\t'"),
            ("é", "'é'"),
        ] {
            let e = BasicAuth::new(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let e = BasicAuth::new(&"x".repeat(256)).unwrap_err();
        assert!(e.contains("256 bytes"), "{e}");
    }

    #[test]
    fn debug_does_not_show_the_password() {
        let p = BasicAuth::new("topsecret").unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("topsecret"), "{d}");
        assert_eq!(d, "BasicAuth(<redacted>)");
    }
}
