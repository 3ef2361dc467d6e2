//! Options of the lambda_fdw catalogs: which exist where, and their values.
//! Everything here is pure, so the validator and the scan share one parser.

use std::collections::HashMap;

use lambda_fdw_core::batch::BatchFormat;
use lambda_fdw_core::error::CoreError;
use lambda_fdw_core::name::{
    parse_function_name, validate_qualifier, validate_region, FunctionRef,
};
use lambda_fdw_core::request::{InvocationType, LogType};
use lambda_fdw_core::settings::{AssumeRole, CredentialSource};

use super::limits::{
    MAX_ATTEMPTS_LIMIT, MAX_BATCH_SIZE, MAX_CONCURRENCY_LIMIT, MAX_ORDERING_KEY_BYTES,
    MAX_TIMEOUT_MS,
};
use crate::error::OptionError;

/// The catalog an option list belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OptionsFor {
    Wrapper,
    Server,
    UserMapping,
    Table,
    /// The options of IMPORT FOREIGN SCHEMA.
    Import,
}

impl OptionsFor {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            OptionsFor::Wrapper => "the lambda_fdw foreign data wrapper",
            OptionsFor::Server => "a lambda_fdw server",
            OptionsFor::UserMapping => "a lambda_fdw user mapping",
            OptionsFor::Table => "a lambda_fdw foreign table",
            OptionsFor::Import => "IMPORT FOREIGN SCHEMA from a lambda_fdw server",
        }
    }

    pub(crate) fn valid_options(self) -> &'static [&'static str] {
        match self {
            OptionsFor::Wrapper => &[],
            OptionsFor::Server => SERVER_OPTIONS,
            OptionsFor::UserMapping => USER_MAPPING_OPTIONS,
            OptionsFor::Table => TABLE_OPTIONS,
            OptionsFor::Import => IMPORT_OPTIONS,
        }
    }
}

pub(crate) const SERVER_OPTIONS: &[&str] = &[
    "region",
    "endpoint_url",
    "connect_timeout_ms",
    "request_timeout_ms",
    "max_attempts",
    "max_concurrency",
    "allow_server_identity",
];
pub(crate) const USER_MAPPING_OPTIONS: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "profile",
    "role_arn",
    "external_id",
];
pub(crate) const TABLE_OPTIONS: &[&str] = &[
    "function_name",
    "qualifier",
    "invocation_type",
    "log_type",
    "max_concurrency",
    "function_errors",
    "batch_size",
    "batch_format",
    "ordering_key",
    "on_complete",
];
/// IMPORT FOREIGN SCHEMA: `prefix` names the tables, the others are set on
/// every table made.
pub(crate) const IMPORT_OPTIONS: &[&str] = &[
    "qualifier",
    "function_errors",
    "max_concurrency",
    "batch_size",
    "batch_format",
    "prefix",
];

type Result<T> = std::result::Result<T, OptionError>;

fn invalid(option: &'static str, value: &str, expected: impl std::fmt::Display) -> OptionError {
    because(option, value, format!("expected {expected}"))
}

fn because(option: &'static str, value: &str, detail: impl Into<String>) -> OptionError {
    OptionError::InvalidValue {
        option,
        value: value.to_string(),
        detail: detail.into(),
    }
}

/// The reason of a name or qualifier error, without repeating the value.
fn reason(e: CoreError) -> String {
    match e {
        CoreError::InvalidFunctionName { reason, .. }
        | CoreError::InvalidQualifier { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn int_option<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    map: &HashMap<String, String>,
    option: &'static str,
    min: T,
    max: T,
) -> Result<Option<T>> {
    match map.get(option) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max && v.trim() == v => Ok(Some(n)),
            _ => Err(invalid(
                option,
                v,
                format!("an integer from {min} to {max}"),
            )),
        },
    }
}

/// Options of a foreign server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerOptions {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub max_concurrency: Option<usize>,
    /// A superuser let roles without credentials of their own sign this
    /// server's foreign-table calls with the server process's AWS identity.
    pub allow_server_identity: bool,
}

fn bool_option(map: &HashMap<String, String>, option: &'static str) -> Result<bool> {
    match map.get(option).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(invalid(option, v, "true or false")),
    }
}

/// Checks an endpoint URL: http or https, with a host, and nothing after the
/// authority but an optional path.
pub(crate) fn validate_endpoint_url(option: &'static str, url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let ok = match rest {
        Some(rest) => {
            let host = rest.split('/').next().unwrap_or("");
            !host.is_empty()
                && !rest.contains(char::is_whitespace)
                && !rest.contains(['?', '#', '@'])
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            option,
            url,
            "an http:// or https:// URL such as https://lambda.us-east-1.amazonaws.com",
        ))
    }
}

impl ServerOptions {
    pub(crate) fn parse(map: &HashMap<String, String>) -> Result<Self> {
        let region = map.get("region").ok_or(OptionError::Missing {
            option: "region",
            catalog: OptionsFor::Server.describe(),
        })?;
        validate_region(region)
            .map_err(|_| invalid("region", region, "an AWS region name such as us-east-1"))?;
        if let Some(url) = map.get("endpoint_url") {
            validate_endpoint_url("endpoint_url", url)?;
        }
        Ok(Self {
            region: region.clone(),
            endpoint_url: map.get("endpoint_url").cloned(),
            connect_timeout_ms: int_option(map, "connect_timeout_ms", 1, MAX_TIMEOUT_MS)?,
            request_timeout_ms: int_option(map, "request_timeout_ms", 1, MAX_TIMEOUT_MS)?,
            max_attempts: int_option(map, "max_attempts", 1, MAX_ATTEMPTS_LIMIT)?,
            max_concurrency: int_option(map, "max_concurrency", 1, MAX_CONCURRENCY_LIMIT)?,
            allow_server_identity: bool_option(map, "allow_server_identity")?,
        })
    }
}

/// Credentials from a user mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserMappingOptions {
    pub credentials: CredentialSource,
    pub assume_role: Option<AssumeRole>,
}

fn validate_role_arn(arn: &str) -> Result<()> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|r| !r.is_empty());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "role_arn",
            arn,
            "an IAM role ARN such as arn:aws:iam::123456789012:role/invoker",
        ))
    }
}

impl UserMappingOptions {
    /// Whether the mapping says how to sign: keys of its own, a profile or
    /// a role to assume (the last two only a superuser can set). Without,
    /// calls would sign with the server process's own AWS identity.
    pub(crate) fn names_credentials(&self) -> bool {
        self.credentials != CredentialSource::DefaultChain || self.assume_role.is_some()
    }

    pub(crate) fn parse(map: &HashMap<String, String>) -> Result<Self> {
        let key = map.get("aws_access_key_id");
        let secret = map.get("aws_secret_access_key");
        let token = map.get("aws_session_token");
        let profile = map.get("profile");
        let credentials = match (key, secret, profile) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(OptionError::Exclusive("aws_access_key_id", "profile"))
            }
            (Some(k), Some(s), None) => {
                if k.is_empty() {
                    // Never echo a credential value back.
                    return Err(invalid(
                        "aws_access_key_id",
                        "",
                        "a non-empty access key id",
                    ));
                }
                CredentialSource::Static {
                    access_key_id: k.clone(),
                    secret_access_key: s.clone(),
                    session_token: token.cloned(),
                }
            }
            (Some(_), None, None) => {
                return Err(OptionError::Requires {
                    option: "aws_access_key_id",
                    needs: "aws_secret_access_key",
                })
            }
            (None, Some(_), None) => {
                return Err(OptionError::Requires {
                    option: "aws_secret_access_key",
                    needs: "aws_access_key_id",
                })
            }
            (None, None, Some(p)) => {
                if p.is_empty() {
                    return Err(invalid("profile", p, "a profile name"));
                }
                CredentialSource::Profile(p.clone())
            }
            (None, None, None) => CredentialSource::DefaultChain,
        };
        if token.is_some() && !matches!(credentials, CredentialSource::Static { .. }) {
            return Err(OptionError::Requires {
                option: "aws_session_token",
                needs: "aws_access_key_id",
            });
        }
        let assume_role = match (map.get("role_arn"), map.get("external_id")) {
            (Some(arn), ext) => {
                validate_role_arn(arn)?;
                Some(AssumeRole {
                    role_arn: arn.clone(),
                    external_id: ext.cloned(),
                })
            }
            (None, Some(_)) => {
                return Err(OptionError::Requires {
                    option: "external_id",
                    needs: "role_arn",
                })
            }
            (None, None) => None,
        };
        Ok(Self {
            credentials,
            assume_role,
        })
    }
}

/// What a foreign table does when its function reports an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FunctionErrors {
    /// The query fails with the function's error message.
    Raise,
    /// The row is returned with `function_error` set and the error object in `response`.
    Return,
}

/// Options of a foreign table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableOptions {
    pub function: FunctionRef,
    pub function_name: String,
    pub qualifier: Option<String>,
    pub invocation_type: InvocationType,
    pub log_type: LogType,
    pub max_concurrency: Option<usize>,
    pub function_errors: FunctionErrors,
    /// Rows per invocation (`batch_size`, default 1).
    pub batch_size: usize,
    /// The request's format (`batch_format`): None sends each payload as
    /// the request, as before batching; a table with `batch_size` over 1 and
    /// no format uses lambda_fdw's. Set alone, a format sends batches of one
    /// row, so a warehouse's function can serve a table that does not batch.
    pub batch_format: Option<BatchFormat>,
    /// The ordering key of every invocation an INSERT queues (0.6.0): they
    /// are sent one at a time, in order.
    pub ordering_key: Option<String>,
    /// The completion callback of every invocation an INSERT queues (0.6.0),
    /// as written: a schema-qualified function name, resolved and checked
    /// when a row is queued.
    pub on_complete: Option<String>,
}

impl TableOptions {
    /// The format batches are sent in, if the table batches at all.
    pub(crate) fn batching(&self) -> Option<BatchFormat> {
        match (self.batch_format, self.batch_size) {
            (Some(f), _) => Some(f),
            (None, n) if n > 1 => Some(BatchFormat::LambdaFdw),
            (None, _) => None,
        }
    }

    /// Checks the function name against the region of the table's server
    /// (a full ARN must name that region) and the table's qualifier.
    pub(crate) fn check_region(&self, server_region: &str) -> std::result::Result<(), CoreError> {
        self.function
            .resolve(Some(server_region), self.qualifier.as_deref(), None)
            .map(|_| ())
    }

    pub(crate) fn parse(map: &HashMap<String, String>) -> Result<Self> {
        let name = map.get("function_name").ok_or(OptionError::Missing {
            option: "function_name",
            catalog: OptionsFor::Table.describe(),
        })?;
        let function =
            parse_function_name(name).map_err(|e| because("function_name", name, reason(e)))?;
        let qualifier = map.get("qualifier").cloned();
        if let Some(q) = &qualifier {
            validate_qualifier(q).map_err(|e| because("qualifier", q, reason(e)))?;
            if let Some(in_name) = &function.qualifier {
                if in_name != q {
                    return Err(because(
                        "qualifier",
                        q,
                        format!("function_name already gives qualifier \"{in_name}\""),
                    ));
                }
            }
        }
        let invocation_type = match map.get("invocation_type") {
            None => InvocationType::RequestResponse,
            Some(v) => InvocationType::parse(v)
                .map_err(|_| invalid("invocation_type", v, "RequestResponse, Event or DryRun"))?,
        };
        let log_type = match map.get("log_type") {
            None => LogType::None,
            Some(v) => LogType::parse(v).map_err(|_| invalid("log_type", v, "None or Tail"))?,
        };
        let function_errors = match map.get("function_errors").map(String::as_str) {
            None | Some("raise") => FunctionErrors::Raise,
            Some("return") => FunctionErrors::Return,
            Some(v) => return Err(invalid("function_errors", v, "raise or return")),
        };
        let batch_format = match map.get("batch_format") {
            None => None,
            Some(v) => Some(BatchFormat::parse(v).ok_or_else(|| {
                invalid(
                    "batch_format",
                    v,
                    "lambda_fdw, redshift, bigquery or snowflake",
                )
            })?),
        };
        let ordering_key = match map.get("ordering_key") {
            Some(v) if v.len() > MAX_ORDERING_KEY_BYTES => {
                return Err(because(
                    "ordering_key",
                    v,
                    format!(
                        "it is {} bytes, more than {MAX_ORDERING_KEY_BYTES}",
                        v.len()
                    ),
                ))
            }
            v => v.cloned(),
        };
        Ok(Self {
            function,
            function_name: name.clone(),
            qualifier,
            invocation_type,
            log_type,
            max_concurrency: int_option(map, "max_concurrency", 1, MAX_CONCURRENCY_LIMIT)?,
            function_errors,
            batch_size: int_option(map, "batch_size", 1, MAX_BATCH_SIZE)?.unwrap_or(1),
            batch_format,
            ordering_key,
            on_complete: match map.get("on_complete") {
                Some(v) if v.trim().is_empty() => {
                    return Err(invalid(
                        "on_complete",
                        v,
                        "a schema-qualified function name",
                    ))
                }
                v => v.cloned(),
            },
        })
    }
}

/// Validates an option list (`name=value` strings, as PostgreSQL passes them
/// to a validator) for one catalog, as set by a superuser or not: the
/// options that reach the server process's own AWS identity are
/// superuser-only (as postgres_fdw's `password_required`). Like
/// postgres_fdw's, the check sees the whole list, so a role that is not a
/// superuser cannot alter a server or mapping that carries one of them.
pub(crate) fn validate(catalog: OptionsFor, options: &[String], superuser: bool) -> Result<()> {
    let map = named(catalog, options)?;
    match catalog {
        OptionsFor::Wrapper => Ok(()),
        OptionsFor::Server => {
            let server = ServerOptions::parse(&map)?;
            if server.allow_server_identity && !superuser {
                return Err(OptionError::SuperuserOnly {
                    what: "\"allow_server_identity\"",
                    detail: "It lets roles without AWS credentials of their own sign with the server process's own AWS identity.",
                });
            }
            Ok(())
        }
        OptionsFor::UserMapping => {
            let mapping = UserMappingOptions::parse(&map)?;
            if superuser {
                return Ok(());
            }
            if matches!(mapping.credentials, CredentialSource::Profile(_)) {
                return Err(OptionError::SuperuserOnly {
                    what: "\"profile\"",
                    detail: "A profile is read from the AWS files of the operating system user that runs PostgreSQL (credential_process included), and signs with what they give.",
                });
            }
            if mapping.assume_role.is_some()
                && mapping.credentials == CredentialSource::DefaultChain
            {
                return Err(OptionError::SuperuserOnly {
                    what: "\"role_arn\" without \"aws_access_key_id\"",
                    detail: "Without keys of the mapping's own, the role is assumed with the server process's own AWS identity.",
                });
            }
            Ok(())
        }
        OptionsFor::Table => TableOptions::parse(&map).map(|_| ()),
        OptionsFor::Import => ImportOptions::parse(&map).map(|_| ()),
    }
}

/// An option list (`name=value` strings) as a map, every name checked
/// against the catalog's options; the values are not checked.
pub(crate) fn named(catalog: OptionsFor, options: &[String]) -> Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for opt in options {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| OptionError::Malformed(opt.clone()))?;
        if !catalog.valid_options().contains(&k) {
            if catalog != OptionsFor::UserMapping && USER_MAPPING_OPTIONS.contains(&k) {
                return Err(OptionError::CredentialOutsideUserMapping(k.to_string()));
            }
            return Err(OptionError::Unknown {
                option: k.to_string(),
                catalog: catalog.describe(),
                valid: catalog.valid_options().join(", "),
            });
        }
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

/// The options of IMPORT FOREIGN SCHEMA, checked as a table's would be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ImportOptions {
    /// Put before every function name to name its table.
    pub prefix: String,
    /// Set on every table made, in this order.
    pub table_options: Vec<(&'static str, String)>,
}

impl ImportOptions {
    pub(crate) fn parse(map: &HashMap<String, String>) -> Result<Self> {
        let table_options: Vec<(&'static str, String)> = IMPORT_OPTIONS
            .iter()
            .filter(|&&name| name != "prefix")
            .filter_map(|&name| map.get(name).map(|v| (name, v.clone())))
            .collect();
        // The values must make a valid table, whatever the function.
        let mut table: HashMap<String, String> = table_options
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        table.insert("function_name".into(), "f".into());
        TableOptions::parse(&table)?;
        Ok(Self {
            prefix: map.get("prefix").cloned().unwrap_or_default(),
            table_options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_su(catalog: OptionsFor, options: &[String]) -> Result<()> {
        validate(catalog, options, true)
    }

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn map(list: &[(&str, &str)]) -> HashMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_options_list_the_valid_ones() {
        let e = validate_su(OptionsFor::Server, &opts(&["regoin=us-east-1"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid option \"regoin\" for a lambda_fdw server"
        );
        match e {
            OptionError::Unknown { valid, .. } => assert_eq!(
                valid,
                "region, endpoint_url, connect_timeout_ms, request_timeout_ms, max_attempts, max_concurrency, allow_server_identity"
            ),
            other => panic!("{other:?}"),
        }
        assert!(validate_su(OptionsFor::Wrapper, &opts(&["x=1"])).is_err());
        assert!(validate_su(OptionsFor::Wrapper, &[]).is_ok());
    }

    #[test]
    fn credentials_only_in_user_mappings() {
        for catalog in [OptionsFor::Wrapper, OptionsFor::Server, OptionsFor::Table] {
            for opt in USER_MAPPING_OPTIONS {
                let e = validate_su(catalog, &opts(&[&format!("{opt}=x")])).unwrap_err();
                assert_eq!(
                    e,
                    OptionError::CredentialOutsideUserMapping(opt.to_string())
                );
            }
        }
    }

    #[test]
    fn server_options() {
        assert_eq!(
            validate_su(OptionsFor::Server, &[])
                .unwrap_err()
                .to_string(),
            "option \"region\" is required for a lambda_fdw server"
        );
        let s = ServerOptions::parse(&map(&[
            ("region", "eu-west-1"),
            ("endpoint_url", "http://127.0.0.1:4566"),
            ("connect_timeout_ms", "250"),
            ("request_timeout_ms", "900000"),
            ("max_attempts", "1"),
            ("max_concurrency", "20"),
        ]))
        .unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.connect_timeout_ms, Some(250));
        assert_eq!(s.request_timeout_ms, Some(900000));
        assert_eq!(s.max_attempts, Some(1));
        assert_eq!(s.max_concurrency, Some(20));
        for (k, v) in [
            ("region", "moon-1"),
            ("endpoint_url", "ftp://x"),
            ("endpoint_url", "http://"),
            ("endpoint_url", "http://u:p@host"),
            ("connect_timeout_ms", "0"),
            ("connect_timeout_ms", "900001"),
            ("request_timeout_ms", "abc"),
            ("request_timeout_ms", " 5"),
            ("max_attempts", "11"),
            ("max_concurrency", "0"),
        ] {
            let mut m = map(&[("region", "us-east-1")]);
            m.insert(k.into(), v.into());
            assert!(
                matches!(
                    ServerOptions::parse(&m),
                    Err(OptionError::InvalidValue { .. })
                ),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn options_that_reach_the_server_identity_are_superuser_only() {
        let denied = |catalog, list: &[&str]| {
            validate(catalog, &opts(list), false)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            denied(OptionsFor::UserMapping, &["profile=dev"]),
            "only a superuser can set option \"profile\""
        );
        assert_eq!(
            denied(
                OptionsFor::UserMapping,
                &["role_arn=arn:aws:iam::123456789012:role/r"]
            ),
            "only a superuser can set option \"role_arn\" without \"aws_access_key_id\""
        );
        assert_eq!(
            denied(
                OptionsFor::Server,
                &["region=us-east-1", "allow_server_identity=true"]
            ),
            "only a superuser can set option \"allow_server_identity\""
        );
        // Keys of the mapping's own, with or without a role to assume, and
        // turning the server identity off, are anyone's.
        for (catalog, list) in [
            (
                OptionsFor::UserMapping,
                vec!["aws_access_key_id=AK", "aws_secret_access_key=SK"],
            ),
            (
                OptionsFor::UserMapping,
                vec![
                    "aws_access_key_id=AK",
                    "aws_secret_access_key=SK",
                    "role_arn=arn:aws:iam::123456789012:role/r",
                ],
            ),
            (OptionsFor::UserMapping, vec![]),
            (
                OptionsFor::Server,
                vec!["region=us-east-1", "allow_server_identity=false"],
            ),
        ] {
            validate(catalog, &opts(&list), false).unwrap();
        }
        // A superuser may set them all.
        validate(OptionsFor::UserMapping, &opts(&["profile=dev"]), true).unwrap();
        validate(
            OptionsFor::Server,
            &opts(&["region=us-east-1", "allow_server_identity=true"]),
            true,
        )
        .unwrap();
        assert_eq!(
            validate(
                OptionsFor::Server,
                &opts(&["region=us-east-1", "allow_server_identity=yes"]),
                true
            )
            .unwrap_err()
            .to_string(),
            "invalid value for option \"allow_server_identity\": \"yes\""
        );
    }

    #[test]
    fn a_mapping_names_credentials_with_keys_a_profile_or_a_role() {
        let named = |list: &[(&str, &str)]| {
            UserMappingOptions::parse(&map(list))
                .unwrap()
                .names_credentials()
        };
        assert!(!named(&[]));
        assert!(named(&[
            ("aws_access_key_id", "AK"),
            ("aws_secret_access_key", "SK")
        ]));
        assert!(named(&[("profile", "p")]));
        assert!(named(&[("role_arn", "arn:aws:iam::123456789012:role/r")]));
    }

    #[test]
    fn user_mapping_options() {
        let u = UserMappingOptions::parse(&map(&[
            ("aws_access_key_id", "AK"),
            ("aws_secret_access_key", "SK"),
            ("aws_session_token", "T"),
        ]))
        .unwrap();
        assert!(matches!(u.credentials, CredentialSource::Static { .. }));
        assert_eq!(
            UserMappingOptions::parse(&map(&[])).unwrap().credentials,
            CredentialSource::DefaultChain
        );
        assert_eq!(
            UserMappingOptions::parse(&map(&[("profile", "dev")]))
                .unwrap()
                .credentials,
            CredentialSource::Profile("dev".into())
        );
        assert_eq!(
            UserMappingOptions::parse(&map(&[("aws_access_key_id", "AK")]))
                .unwrap_err()
                .to_string(),
            "option \"aws_access_key_id\" needs option \"aws_secret_access_key\""
        );
        assert!(UserMappingOptions::parse(&map(&[("aws_secret_access_key", "SK")])).is_err());
        assert!(UserMappingOptions::parse(&map(&[("aws_session_token", "T")])).is_err());
        assert!(UserMappingOptions::parse(&map(&[
            ("aws_access_key_id", "AK"),
            ("aws_secret_access_key", "SK"),
            ("profile", "p")
        ]))
        .is_err());
        let r = UserMappingOptions::parse(&map(&[
            ("role_arn", "arn:aws:iam::123456789012:role/invoker"),
            ("external_id", "x-1"),
        ]))
        .unwrap();
        assert_eq!(r.assume_role.unwrap().external_id.as_deref(), Some("x-1"));
        assert!(UserMappingOptions::parse(&map(&[("role_arn", "arn:aws:iam::1:role/x")])).is_err());
        assert!(UserMappingOptions::parse(&map(&[("role_arn", "arn:aws:s3:::bucket")])).is_err());
        assert!(UserMappingOptions::parse(&map(&[("external_id", "x")])).is_err());
    }

    #[test]
    fn secrets_never_appear_in_option_errors() {
        let e = UserMappingOptions::parse(&map(&[
            ("aws_access_key_id", ""),
            ("aws_secret_access_key", "TOPSECRET"),
        ]))
        .unwrap_err();
        assert!(!e.to_string().contains("TOPSECRET"));
    }

    #[test]
    fn table_options() {
        let t = TableOptions::parse(&map(&[("function_name", "f")])).unwrap();
        assert_eq!(t.invocation_type, InvocationType::RequestResponse);
        assert_eq!(t.log_type, LogType::None);
        assert_eq!(t.function_errors, FunctionErrors::Raise);
        assert_eq!(
            validate_su(OptionsFor::Table, &[]).unwrap_err().to_string(),
            "option \"function_name\" is required for a lambda_fdw foreign table"
        );
        let t = TableOptions::parse(&map(&[
            ("function_name", "f:prod"),
            ("qualifier", "prod"),
            ("invocation_type", "Event"),
            ("log_type", "Tail"),
            ("function_errors", "return"),
            ("max_concurrency", "3"),
        ]))
        .unwrap();
        assert_eq!(t.qualifier.as_deref(), Some("prod"));
        assert_eq!(t.invocation_type, InvocationType::Event);
        assert_eq!(t.function_errors, FunctionErrors::Return);
        for (k, v) in [
            ("function_name", "a:b:c"),
            ("qualifier", "dev"),
            ("qualifier", ""),
            ("invocation_type", "event"),
            ("log_type", "tail"),
            ("function_errors", "ignore"),
            ("max_concurrency", "1001"),
        ] {
            let mut m = map(&[("function_name", "f:prod")]);
            m.insert(k.into(), v.into());
            assert!(
                matches!(
                    TableOptions::parse(&m),
                    Err(OptionError::InvalidValue { .. })
                ),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn batch_options() {
        let plain = TableOptions::parse(&map(&[("function_name", "f")])).unwrap();
        assert_eq!(
            (plain.batch_size, plain.batch_format, plain.batching()),
            (1, None, None)
        );
        let sized =
            TableOptions::parse(&map(&[("function_name", "f"), ("batch_size", "500")])).unwrap();
        assert_eq!(sized.batching(), Some(BatchFormat::LambdaFdw));
        let one = TableOptions::parse(&map(&[
            ("function_name", "f"),
            ("batch_format", "redshift"),
        ]))
        .unwrap();
        assert_eq!(
            (one.batch_size, one.batching()),
            (1, Some(BatchFormat::Redshift))
        );
        for (k, v, expected) in [
            ("batch_size", "0", "expected an integer from 1 to 10000"),
            ("batch_size", "10001", "expected an integer from 1 to 10000"),
            (
                "batch_format",
                "Redshift",
                "expected lambda_fdw, redshift, bigquery or snowflake",
            ),
        ] {
            let e = TableOptions::parse(&map(&[("function_name", "f"), (k, v)])).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid value for option \"{k}\": \"{v}\"")
            );
            assert!(
                matches!(&e, OptionError::InvalidValue { detail, .. } if detail == expected),
                "{k}={v}: {e:?}"
            );
        }
        // IMPORT FOREIGN SCHEMA takes them and sets them on every table.
        let import =
            ImportOptions::parse(&map(&[("batch_size", "100"), ("batch_format", "bigquery")]))
                .unwrap();
        assert_eq!(
            import.table_options,
            vec![
                ("batch_size", "100".to_string()),
                ("batch_format", "bigquery".to_string())
            ]
        );
        assert!(ImportOptions::parse(&map(&[("batch_format", "csv")])).is_err());
    }

    #[test]
    fn malformed_option_strings() {
        assert_eq!(
            validate_su(OptionsFor::Server, &opts(&["region"])).unwrap_err(),
            OptionError::Malformed("region".into())
        );
    }
}
