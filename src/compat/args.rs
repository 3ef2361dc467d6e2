//! Arguments of `aws_lambda.invoke`, whichever overload was called, and the
//! repair of the RDS guide's `\gset` idiom.
//!
//! The guide stores `aws_commons.create_lambda_function_arn(...)` in a psql
//! variable and passes it back as `:'var'`: an untyped literal such as
//! `'(my-function,us-west-1)'`. PostgreSQL resolves an untyped literal to the
//! text overload, so the composite lands in `function_name` and every later
//! positional argument one slot to the right of where the composite overload
//! has it (`'RequestResponse'` in `region`, ...). No function name contains
//! parentheses, so a `function_name` written like a composite literal can be
//! read back as the composite, and the arguments moved back into place.

use lambda_fdw_core::{CoreError, CoreResult};

/// The arguments of one call, as the composite-or-text overloads agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InvokeArgs {
    pub function_name: String,
    pub region: Option<String>,
    pub invocation_type: String,
    pub log_type: String,
    /// JSON text of the client context.
    pub context: Option<String>,
    pub qualifier: Option<String>,
}

/// Parses a composite literal `(f1,f2)` as record_in writes and reads it:
/// fields separated by commas, optionally double-quoted (with `""` or `\"`
/// inside quotes), an empty unquoted field meaning NULL.
pub(crate) fn parse_arn_literal(text: &str) -> Option<(Option<String>, Option<String>)> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let mut fields: Vec<Option<String>> = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut value = String::new();
        let mut quoted = false;
        let mut any = false;
        while let Some(&c) = chars.peek() {
            if c == ',' && !quoted {
                break;
            }
            chars.next();
            any = true;
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    chars.next();
                    value.push('"');
                }
                '"' => quoted = !quoted,
                '\\' => value.push(chars.next()?),
                _ => value.push(c),
            }
        }
        if quoted {
            return None;
        }
        fields.push(if any { Some(value) } else { None });
        if chars.next().is_none() {
            break;
        }
    }
    if fields.len() == 2 {
        Some((fields[0].clone(), fields[1].clone()))
    } else {
        None
    }
}

/// The text overload's arguments as PostgreSQL passed them.
#[derive(Clone, Debug, Default)]
pub(crate) struct TextOverloadArgs {
    pub function_name: Option<String>,
    pub region: Option<String>,
    pub invocation_type: Option<String>,
    pub log_type: Option<String>,
    pub context: Option<String>,
    pub qualifier: Option<String>,
}

fn required(name: &'static str, v: Option<String>) -> CoreResult<String> {
    v.ok_or(CoreError::NullArgument(name))
}

/// Reads the text overload's arguments, recognising a composite literal in
/// `function_name` and moving the shifted arguments back (see module docs).
pub(crate) fn from_text_overload(a: TextOverloadArgs) -> CoreResult<InvokeArgs> {
    let name = required("function_name", a.function_name)?;
    // A composite literal is never a function name: with a region argument
    // present, the caller used the composite overload's positions.
    let shifted = a.region.is_some();
    match parse_arn_literal(&name) {
        Some((arn_name, arn_region)) => {
            let function_name = required("function_name", arn_name)?;
            if !shifted {
                // Only function_name and payload were given positionally (or
                // the rest by name): nothing moved.
                return Ok(InvokeArgs {
                    function_name,
                    region: arn_region,
                    invocation_type: required("invocation_type", a.invocation_type)?,
                    log_type: required("log_type", a.log_type)?,
                    context: a.context,
                    qualifier: a.qualifier,
                });
            }
            // Shifted: region held invocation_type, invocation_type held
            // log_type, log_type held context, context held qualifier. A slot
            // still at its own default means the caller did not give it.
            let log_type = match a.invocation_type.as_deref() {
                None | Some("RequestResponse") => "None".to_string(),
                Some(v) => v.to_string(),
            };
            let context = match a.log_type.as_deref() {
                None | Some("None") => None,
                Some(v) => Some(v.to_string()),
            };
            let qualifier = match a.context {
                Some(json) => Some(serde_json::from_str::<String>(&json).map_err(|_| {
                    CoreError::InvalidQualifier {
                        value: json.clone(),
                        reason: "a qualifier is a string".into(),
                    }
                })?),
                None => a.qualifier,
            };
            Ok(InvokeArgs {
                function_name,
                region: arn_region,
                invocation_type: required("invocation_type", a.region)?,
                log_type,
                context,
                qualifier,
            })
        }
        _ => Ok(InvokeArgs {
            function_name: name,
            region: a.region,
            invocation_type: required("invocation_type", a.invocation_type)?,
            log_type: required("log_type", a.log_type)?,
            context: a.context,
            qualifier: a.qualifier,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(
        name: &str,
        region: Option<&str>,
        inv: &str,
        log: &str,
        ctx: Option<&str>,
        q: Option<&str>,
    ) -> TextOverloadArgs {
        TextOverloadArgs {
            function_name: Some(name.into()),
            region: region.map(Into::into),
            invocation_type: Some(inv.into()),
            log_type: Some(log.into()),
            context: ctx.map(Into::into),
            qualifier: q.map(Into::into),
        }
    }

    #[test]
    fn composite_literals() {
        assert_eq!(
            parse_arn_literal("(my-function,us-west-1)"),
            Some((Some("my-function".into()), Some("us-west-1".into())))
        );
        assert_eq!(
            parse_arn_literal("(my-function,)"),
            Some((Some("my-function".into()), None))
        );
        assert_eq!(
            parse_arn_literal(r#"("arn:aws:lambda:us-east-1:123456789012:function:f",us-east-1)"#),
            Some((
                Some("arn:aws:lambda:us-east-1:123456789012:function:f".into()),
                Some("us-east-1".into())
            ))
        );
        assert_eq!(
            parse_arn_literal(r#"("a""b",x)"#),
            Some((Some("a\"b".into()), Some("x".into())))
        );
        assert_eq!(parse_arn_literal("my-function"), None);
        assert_eq!(parse_arn_literal("(a,b,c)"), None);
        assert_eq!(parse_arn_literal("(a)"), None);
        assert_eq!(parse_arn_literal("(\"a,b)"), None);
    }

    #[test]
    fn plain_text_calls_pass_through() {
        let a = from_text_overload(text(
            "f",
            Some("us-east-1"),
            "Event",
            "Tail",
            None,
            Some("2"),
        ))
        .unwrap();
        assert_eq!(
            a,
            InvokeArgs {
                function_name: "f".into(),
                region: Some("us-east-1".into()),
                invocation_type: "Event".into(),
                log_type: "Tail".into(),
                context: None,
                qualifier: Some("2".into()),
            }
        );
    }

    #[test]
    fn guide_form_with_invocation_type_and_log_type() {
        // aws_lambda.invoke(:'arn', '{...}'::json, 'RequestResponse', 'Tail')
        let a = from_text_overload(text(
            "(my-function,us-west-1)",
            Some("RequestResponse"),
            "Tail",
            "None",
            None,
            None,
        ))
        .unwrap();
        assert_eq!(a.function_name, "my-function");
        assert_eq!(a.region.as_deref(), Some("us-west-1"));
        assert_eq!(a.invocation_type, "RequestResponse");
        assert_eq!(a.log_type, "Tail");
        assert_eq!(a.context, None);
    }

    #[test]
    fn guide_form_with_only_invocation_type() {
        // aws_lambda.invoke(:'arn', '{...}'::json, 'Event')
        let a = from_text_overload(text(
            "(my-function,us-west-1)",
            Some("Event"),
            "RequestResponse",
            "None",
            None,
            None,
        ))
        .unwrap();
        assert_eq!(a.invocation_type, "Event");
        assert_eq!(a.log_type, "None");
    }

    #[test]
    fn guide_form_with_context_and_qualifier() {
        let a = from_text_overload(text(
            "(f,us-east-1)",
            Some("RequestResponse"),
            "None",
            r#"{"custom": {"a": 1}}"#,
            Some(r#""prod""#),
            None,
        ))
        .unwrap();
        assert_eq!(a.context.as_deref(), Some(r#"{"custom": {"a": 1}}"#));
        assert_eq!(a.qualifier.as_deref(), Some("prod"));
    }

    #[test]
    fn composite_literal_with_two_arguments() {
        let a = from_text_overload(text(
            "(f,eu-west-1)",
            None,
            "RequestResponse",
            "None",
            None,
            None,
        ))
        .unwrap();
        assert_eq!(a.function_name, "f");
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.invocation_type, "RequestResponse");
    }

    #[test]
    fn guide_form_with_a_bad_invocation_type_keeps_it_for_the_error() {
        let a = from_text_overload(text(
            "(f,us-east-1)",
            Some("event"),
            "RequestResponse",
            "None",
            None,
            None,
        ))
        .unwrap();
        assert_eq!(a.function_name, "f");
        assert_eq!(a.invocation_type, "event");
    }

    #[test]
    fn nulls_are_errors() {
        let mut t = text("f", None, "RequestResponse", "None", None, None);
        t.function_name = None;
        assert!(matches!(
            from_text_overload(t),
            Err(CoreError::NullArgument("function_name"))
        ));
        let mut t = text("f", None, "RequestResponse", "None", None, None);
        t.invocation_type = None;
        assert!(matches!(
            from_text_overload(t),
            Err(CoreError::NullArgument("invocation_type"))
        ));
        let mut t = text("f", None, "RequestResponse", "None", None, None);
        t.log_type = None;
        assert!(matches!(
            from_text_overload(t),
            Err(CoreError::NullArgument("log_type"))
        ));
        assert!(matches!(
            from_text_overload(text(
                "(,us-east-1)",
                Some("Event"),
                "RequestResponse",
                "None",
                None,
                None
            )),
            Err(CoreError::NullArgument("function_name"))
        ));
    }
}
