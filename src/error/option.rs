//! The errors of option validation (`crate::settings::options`): a leaf
//! type, so the extension's error type can hold one without importing the
//! settings layer.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum OptionError {
    #[error("invalid option \"{option}\" for {catalog}")]
    Unknown {
        option: String,
        catalog: &'static str,
        valid: String,
    },
    #[error("option \"{0}\" is only allowed in a user mapping")]
    CredentialOutsideUserMapping(String),
    #[error("option \"{option}\" is required for {catalog}")]
    Missing {
        option: &'static str,
        catalog: &'static str,
    },
    #[error("invalid value for option \"{option}\": \"{value}\"")]
    InvalidValue {
        option: &'static str,
        value: String,
        detail: String,
    },
    #[error("option \"{option}\" needs option \"{needs}\"")]
    Requires {
        option: &'static str,
        needs: &'static str,
    },
    #[error("options \"{0}\" and \"{1}\" cannot be used together")]
    Exclusive(&'static str, &'static str),
    #[error("malformed option \"{0}\"")]
    Malformed(String),
    /// `what` names the option (quoted) and, where it matters, what is missing.
    #[error("only a superuser can set option {what}")]
    SuperuserOnly {
        what: &'static str,
        detail: &'static str,
    },
}
