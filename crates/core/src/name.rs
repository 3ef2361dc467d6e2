//! Lambda function names in the four forms the Invoke API accepts, and the
//! region / qualifier resolution rules shared by both SQL surfaces.

use crate::error::{CoreError, CoreResult};

/// Longest function identifier the Invoke API accepts (any form).
pub const MAX_FUNCTION_ID_LEN: usize = 170;
/// Longest bare function name.
pub const MAX_FUNCTION_NAME_LEN: usize = 64;
/// Longest qualifier (version or alias).
pub const MAX_QUALIFIER_LEN: usize = 128;

/// A function identifier as the user wrote it, split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionRef {
    /// The bare function name.
    pub name: String,
    /// Account id, from a partial or full ARN.
    pub account: Option<String>,
    /// Region, from a full ARN only.
    pub region: Option<String>,
    /// Partition, from a full ARN only.
    pub partition: Option<String>,
    /// Qualifier written into the identifier (`name:qualifier` or an ARN suffix).
    pub qualifier: Option<String>,
}

/// Where and what to invoke once region and qualifier are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedFunction {
    /// FunctionName to send: the bare name, or a full ARN (never with a qualifier).
    pub function_name: String,
    /// Region the call goes to.
    pub region: String,
    /// Qualifier to send, if any.
    pub qualifier: Option<String>,
    /// A human-readable identity for messages: the full ARN when the account is
    /// known, else the name (with `:qualifier`).
    pub display: String,
}

fn invalid(value: &str, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidFunctionName {
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks a bare function name: 1..=64 of `[A-Za-z0-9_-]`.
fn check_bare_name(whole: &str, name: &str) -> CoreResult<()> {
    if name.is_empty() {
        return Err(invalid(whole, "the function name part is empty"));
    }
    if name.len() > MAX_FUNCTION_NAME_LEN {
        return Err(invalid(
            whole,
            format!(
                "a function name is at most {MAX_FUNCTION_NAME_LEN} characters, this one has {}",
                name.len()
            ),
        ));
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(invalid(
            whole,
            format!("character {c:?} is not allowed in a function name (letters, digits, '-' and '_' only)"),
        ));
    }
    Ok(())
}

/// Checks a qualifier: `$LATEST`, a version number, or an alias of
/// `[A-Za-z0-9_-]`, 1..=128 characters.
pub fn validate_qualifier(q: &str) -> CoreResult<()> {
    let bad = |reason: &str| CoreError::InvalidQualifier {
        value: q.to_string(),
        reason: reason.to_string(),
    };
    if q.is_empty() {
        return Err(bad("a qualifier must not be empty"));
    }
    if q == "$LATEST" {
        return Ok(());
    }
    if q.len() > MAX_QUALIFIER_LEN {
        return Err(bad("a qualifier is at most 128 characters"));
    }
    if !q.chars().all(is_name_char) {
        return Err(bad(
            "a qualifier is $LATEST, a version number or an alias of letters, digits, '-' and '_'",
        ));
    }
    Ok(())
}

/// Checks a region name such as `us-east-1`, `us-gov-west-1`, `cn-north-1`.
pub fn validate_region(region: &str) -> CoreResult<()> {
    let bad = || CoreError::InvalidRegion(region.to_string());
    let parts: Vec<&str> = region.split('-').collect();
    if parts.len() < 3 || region.len() > 32 {
        return Err(bad());
    }
    let (last, rest) = parts.split_last().ok_or_else(bad)?;
    let digits_ok = !last.is_empty() && last.len() <= 2 && last.chars().all(|c| c.is_ascii_digit());
    let words_ok = rest
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()));
    if digits_ok && words_ok && rest[0].len() == 2 {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The AWS partition a region belongs to.
pub fn partition_for_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

fn check_account(whole: &str, account: &str) -> CoreResult<()> {
    if account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(whole, "the account id must be 12 digits"))
    }
}

fn check_partition(whole: &str, partition: &str) -> CoreResult<()> {
    let ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('-')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(whole, format!("unknown partition \"{partition}\"")))
    }
}

fn check_embedded_qualifier(whole: &str, q: Option<&str>) -> CoreResult<Option<String>> {
    match q {
        None => Ok(None),
        Some(q) => {
            validate_qualifier(q).map_err(|e| match e {
                CoreError::InvalidQualifier { reason, .. } => invalid(whole, reason),
                other => other,
            })?;
            Ok(Some(q.to_string()))
        }
    }
}

/// Parses a function identifier: `name`, `name:qualifier`,
/// `account:function:name[:qualifier]` or
/// `arn:partition:lambda:region:account:function:name[:qualifier]`.
pub fn parse_function_name(input: &str) -> CoreResult<FunctionRef> {
    if input.is_empty() {
        return Err(invalid(input, "a function name must not be empty"));
    }
    if input.len() > MAX_FUNCTION_ID_LEN {
        return Err(invalid(
            input,
            format!(
                "a function name or ARN is at most {MAX_FUNCTION_ID_LEN} characters, this one has {}",
                input.len()
            ),
        ));
    }
    if input.trim() != input {
        return Err(invalid(
            input,
            "leading or trailing white space is not allowed",
        ));
    }
    let parts: Vec<&str> = input.split(':').collect();
    if parts[0] == "arn" {
        if parts.len() < 7 || parts.len() > 8 {
            return Err(invalid(
                input,
                "a function ARN has the form arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]",
            ));
        }
        check_partition(input, parts[1])?;
        if parts[2] != "lambda" {
            return Err(invalid(
                input,
                format!("the ARN is for service \"{}\", not lambda", parts[2]),
            ));
        }
        validate_region(parts[3])
            .map_err(|_| invalid(input, format!("\"{}\" is not a valid region", parts[3])))?;
        check_account(input, parts[4])?;
        if parts[5] != "function" {
            return Err(invalid(
                input,
                format!("the ARN resource type is \"{}\", not function", parts[5]),
            ));
        }
        check_bare_name(input, parts[6])?;
        let qualifier = check_embedded_qualifier(input, parts.get(7).copied())?;
        return Ok(FunctionRef {
            name: parts[6].to_string(),
            account: Some(parts[4].to_string()),
            region: Some(parts[3].to_string()),
            partition: Some(parts[1].to_string()),
            qualifier,
        });
    }
    match parts.len() {
        1 => {
            check_bare_name(input, parts[0])?;
            Ok(FunctionRef {
                name: parts[0].to_string(),
                account: None,
                region: None,
                partition: None,
                qualifier: None,
            })
        }
        2 => {
            check_bare_name(input, parts[0])?;
            let qualifier = check_embedded_qualifier(input, Some(parts[1]))?;
            Ok(FunctionRef {
                name: parts[0].to_string(),
                account: None,
                region: None,
                partition: None,
                qualifier,
            })
        }
        3 | 4 if parts[1] == "function" => {
            check_account(input, parts[0])?;
            check_bare_name(input, parts[2])?;
            let qualifier = check_embedded_qualifier(input, parts.get(3).copied())?;
            Ok(FunctionRef {
                name: parts[2].to_string(),
                account: Some(parts[0].to_string()),
                region: None,
                partition: None,
                qualifier,
            })
        }
        _ => Err(invalid(
            input,
            "expected a name, name:qualifier, a partial ARN (account:function:name) or a full ARN",
        )),
    }
}

impl FunctionRef {
    /// Resolves the region and qualifier of a call.
    ///
    /// `region` is the region the caller asked for (an argument, or a foreign
    /// server's region); it must agree with a full ARN's region. Without it,
    /// the ARN's region is used, then `default_region`. `qualifier` must agree
    /// with a qualifier written into the name.
    pub fn resolve(
        &self,
        region: Option<&str>,
        qualifier: Option<&str>,
        default_region: Option<&str>,
    ) -> CoreResult<ResolvedFunction> {
        if let Some(q) = qualifier {
            validate_qualifier(q)?;
        }
        let qualifier = match (&self.qualifier, qualifier) {
            (Some(in_name), Some(given)) if in_name != given => {
                return Err(CoreError::QualifierConflict {
                    given: given.to_string(),
                    in_name: in_name.clone(),
                })
            }
            (Some(q), _) => Some(q.clone()),
            (None, given) => given.map(str::to_string),
        };
        if let Some(r) = region {
            validate_region(r)?;
        }
        let region = match (&self.region, region) {
            (Some(in_arn), Some(given)) if in_arn != given => {
                return Err(CoreError::RegionConflict {
                    given: given.to_string(),
                    in_arn: in_arn.clone(),
                })
            }
            (Some(r), _) => r.clone(),
            (None, Some(given)) => given.to_string(),
            (None, None) => match default_region {
                Some(r) => {
                    validate_region(r)?;
                    r.to_string()
                }
                None => return Err(CoreError::NoRegion),
            },
        };
        let arn = self.account.as_ref().map(|account| {
            let partition = self
                .partition
                .clone()
                .unwrap_or_else(|| partition_for_region(&region).to_string());
            format!(
                "arn:{partition}:lambda:{region}:{account}:function:{}",
                self.name
            )
        });
        let display = match (&arn, &qualifier) {
            (Some(a), Some(q)) => format!("{a}:{q}"),
            (Some(a), None) => a.clone(),
            (None, Some(q)) => format!("{}:{q}", self.name),
            (None, None) => self.name.clone(),
        };
        Ok(ResolvedFunction {
            function_name: arn.unwrap_or_else(|| self.name.clone()),
            region,
            qualifier,
            display,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &str) -> String {
        match parse_function_name(input) {
            Err(CoreError::InvalidFunctionName { reason, .. }) => reason,
            other => panic!("expected an invalid name for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_plain_name() {
        let f = parse_function_name("my-function_1").unwrap();
        assert_eq!(f.name, "my-function_1");
        assert_eq!(f.account, None);
        assert_eq!(f.region, None);
        assert_eq!(f.qualifier, None);
    }

    #[test]
    fn parses_name_with_qualifier() {
        let f = parse_function_name("my-function:prod").unwrap();
        assert_eq!(f.name, "my-function");
        assert_eq!(f.qualifier.as_deref(), Some("prod"));
        let f = parse_function_name("my-function:$LATEST").unwrap();
        assert_eq!(f.qualifier.as_deref(), Some("$LATEST"));
        let f = parse_function_name("my-function:7").unwrap();
        assert_eq!(f.qualifier.as_deref(), Some("7"));
    }

    #[test]
    fn parses_partial_arn() {
        let f = parse_function_name("123456789012:function:my-function").unwrap();
        assert_eq!(f.account.as_deref(), Some("123456789012"));
        assert_eq!(f.name, "my-function");
        assert_eq!(f.region, None);
        let f = parse_function_name("123456789012:function:my-function:v2").unwrap();
        assert_eq!(f.qualifier.as_deref(), Some("v2"));
    }

    #[test]
    fn parses_full_arn() {
        let f = parse_function_name("arn:aws:lambda:us-west-2:123456789012:function:my-function")
            .unwrap();
        assert_eq!(f.partition.as_deref(), Some("aws"));
        assert_eq!(f.region.as_deref(), Some("us-west-2"));
        assert_eq!(f.account.as_deref(), Some("123456789012"));
        assert_eq!(f.qualifier, None);
        let f = parse_function_name(
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f:$LATEST",
        )
        .unwrap();
        assert_eq!(f.partition.as_deref(), Some("aws-us-gov"));
        assert_eq!(f.qualifier.as_deref(), Some("$LATEST"));
    }

    #[test]
    fn rejects_malformed_names() {
        assert_eq!(reason(""), "a function name must not be empty");
        assert_eq!(
            reason(" f"),
            "leading or trailing white space is not allowed"
        );
        assert_eq!(
            reason("f "),
            "leading or trailing white space is not allowed"
        );
        assert!(reason("a:b:c").starts_with("expected a name"));
        assert!(reason("a:b:c:d:e").starts_with("expected a name"));
        assert_eq!(reason("f:"), "a qualifier must not be empty");
        assert_eq!(reason(":q"), "the function name part is empty");
        assert!(reason("my.function").contains("'.'"));
        assert!(reason("f:bad.alias").starts_with("a qualifier is $LATEST"));
        assert_eq!(
            reason("12345:function:f"),
            "the account id must be 12 digits"
        );
        assert_eq!(
            reason("12345678901a:function:f"),
            "the account id must be 12 digits"
        );
        assert!(reason(&"a".repeat(65)).starts_with("a function name is at most 64"));
        assert!(reason(&"a".repeat(171)).starts_with("a function name or ARN is at most 170"));
        assert!(parse_function_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_malformed_arns() {
        assert!(
            reason("arn:aws:lambda:us-east-1:123456789012:function").starts_with("a function ARN")
        );
        assert!(
            reason("arn:aws:lambda:us-east-1:123456789012:function:f:q:extra")
                .starts_with("a function ARN")
        );
        assert_eq!(
            reason("arn:aws:s3:us-east-1:123456789012:function:f"),
            "the ARN is for service \"s3\", not lambda"
        );
        assert_eq!(
            reason("arn:aws:lambda:us-east-1:123456789012:layer:f"),
            "the ARN resource type is \"layer\", not function"
        );
        assert_eq!(
            reason("arn:aws:lambda:useast1:123456789012:function:f"),
            "\"useast1\" is not a valid region"
        );
        assert_eq!(
            reason("arn:gcp:lambda:us-east-1:123456789012:function:f"),
            "unknown partition \"gcp\""
        );
        assert_eq!(
            reason("arn:aws:lambda:us-east-1:1234:function:f"),
            "the account id must be 12 digits"
        );
        assert_eq!(
            reason("arn:aws:lambda:us-east-1:123456789012:function:"),
            "the function name part is empty"
        );
    }

    #[test]
    fn validates_regions() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-4",
        ] {
            assert!(validate_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "US-EAST-1",
            "us-east-1 ",
            "us--1",
            "us-east-123",
            "use-east-1",
        ] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validates_qualifiers() {
        assert!(validate_qualifier("$LATEST").is_ok());
        assert!(validate_qualifier("12").is_ok());
        assert!(validate_qualifier("prod_v-2").is_ok());
        assert!(validate_qualifier("").is_err());
        assert!(validate_qualifier("$latest").is_err());
        assert!(validate_qualifier("a b").is_err());
        assert!(validate_qualifier(&"q".repeat(129)).is_err());
        assert!(validate_qualifier(&"q".repeat(128)).is_ok());
    }

    #[test]
    fn partitions() {
        assert_eq!(partition_for_region("us-east-1"), "aws");
        assert_eq!(partition_for_region("cn-northwest-1"), "aws-cn");
        assert_eq!(partition_for_region("us-gov-east-1"), "aws-us-gov");
        assert_eq!(partition_for_region("us-iso-east-1"), "aws-iso");
        assert_eq!(partition_for_region("us-isob-east-1"), "aws-iso-b");
    }

    #[test]
    fn resolves_plain_name_with_region_and_qualifier() {
        let f = parse_function_name("f").unwrap();
        let r = f.resolve(Some("us-east-1"), Some("prod"), None).unwrap();
        assert_eq!(r.function_name, "f");
        assert_eq!(r.region, "us-east-1");
        assert_eq!(r.qualifier.as_deref(), Some("prod"));
        assert_eq!(r.display, "f:prod");
    }

    #[test]
    fn resolves_partial_arn_to_full_arn() {
        let f = parse_function_name("123456789012:function:f:v1").unwrap();
        let r = f.resolve(Some("cn-north-1"), None, None).unwrap();
        assert_eq!(
            r.function_name,
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:f"
        );
        assert_eq!(r.qualifier.as_deref(), Some("v1"));
        assert_eq!(
            r.display,
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:v1"
        );
    }

    #[test]
    fn region_from_arn_then_default() {
        let f = parse_function_name("arn:aws:lambda:eu-west-1:123456789012:function:f").unwrap();
        assert_eq!(
            f.resolve(None, None, Some("us-east-1")).unwrap().region,
            "eu-west-1"
        );
        assert_eq!(
            f.resolve(Some("eu-west-1"), None, None).unwrap().region,
            "eu-west-1"
        );
        let g = parse_function_name("g").unwrap();
        assert_eq!(
            g.resolve(None, None, Some("us-east-2")).unwrap().region,
            "us-east-2"
        );
        assert!(matches!(
            g.resolve(None, None, None),
            Err(CoreError::NoRegion)
        ));
    }

    #[test]
    fn conflicts_are_errors() {
        let f = parse_function_name("arn:aws:lambda:eu-west-1:123456789012:function:f:v1").unwrap();
        assert!(matches!(
            f.resolve(Some("us-east-1"), None, None),
            Err(CoreError::RegionConflict { .. })
        ));
        assert!(matches!(
            f.resolve(None, Some("v2"), None),
            Err(CoreError::QualifierConflict { .. })
        ));
        // Agreeing values are fine.
        assert!(f.resolve(Some("eu-west-1"), Some("v1"), None).is_ok());
        let g = parse_function_name("g:prod").unwrap();
        assert!(matches!(
            g.resolve(Some("us-east-1"), Some("dev"), None),
            Err(CoreError::QualifierConflict { .. })
        ));
    }

    #[test]
    fn bad_region_or_qualifier_arguments() {
        let f = parse_function_name("f").unwrap();
        assert!(matches!(
            f.resolve(Some("nowhere"), None, None),
            Err(CoreError::InvalidRegion(_))
        ));
        assert!(matches!(
            f.resolve(Some("us-east-1"), Some(""), None),
            Err(CoreError::InvalidQualifier { .. })
        ));
    }
}
