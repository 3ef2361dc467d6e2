//! Everything that makes one SDK client differ from another. A value of
//! [`ClientSettings`] is the key of the per-backend client cache.

use std::fmt;

/// Defaults, shared with the settings of the same names.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 3000;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_MAX_CONCURRENCY: usize = 10;
pub const MAX_TIMEOUT_MS: u64 = 900_000;

/// Where credentials come from. Never printed with its secrets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// The default AWS chain of the server process.
    DefaultChain,
    /// Static keys from a user mapping.
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// A named profile from the server process's AWS config files.
    Profile(String),
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultChain => f.write_str("DefaultChain"),
            Self::Static { .. } => f.write_str("Static(<redacted>)"),
            Self::Profile(p) => write!(f, "Profile({p})"),
        }
    }
}

/// A role to assume with the base credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_attempts: u32,
    pub credentials: CredentialSource,
    pub assume_role: Option<AssumeRole>,
}

impl ClientSettings {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            endpoint_url: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            credentials: CredentialSource::DefaultChain,
            assume_role: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let mut s = ClientSettings::new("us-east-1");
        s.credentials = CredentialSource::Static {
            access_key_id: "AKIDSECRETVALUE".into(),
            secret_access_key: "very-secret-key".into(),
            session_token: Some("token-secret".into()),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("SECRETVALUE"));
        assert!(!shown.contains("very-secret-key"));
        assert!(!shown.contains("token-secret"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn settings_that_differ_are_different_keys() {
        let a = ClientSettings::new("us-east-1");
        let mut b = a.clone();
        assert_eq!(a, b);
        b.request_timeout_ms = 5;
        assert_ne!(a, b);
    }
}
