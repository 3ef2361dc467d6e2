//! Turning the request conditions of a scan, once their values are known,
//! into the list of invocations it makes. Pure: it sees evaluated values and
//! the table's options only (`params` evaluates the conditions).

use std::collections::HashSet;

use serde_json::Value as Json;

use super::columns::RequestColumn;
use super::options::TableOptions;
use crate::core::request::{InvocationType, LogType};
use crate::error::{LambdaFdwError, Result};

/// One invocation a scan will make; its fields are echoed into the row.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedInvocation {
    pub payload: Json,
    pub qualifier: Option<String>,
    pub invocation_type: InvocationType,
    pub log_type: LogType,
    pub context: Option<Json>,
}

/// A non-NULL value of a request column, as a condition gave it.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Json(Json),
    Text(String),
}

impl Arg {
    /// Equal keys mean equal values (jsonb equality: serde_json's maps are
    /// ordered by key, so the serialization is canonical).
    fn key(&self) -> String {
        match self {
            Arg::Json(j) => j.to_string(),
            Arg::Text(t) => t.clone(),
        }
    }
}

/// How a condition compares its column with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// `column = value`
    Eq,
    /// `column = ANY(array)`, which `IN (...)` becomes
    Any,
    /// `column = ALL(array)`
    All,
}

/// The values one condition on a request column allows, in the order given,
/// each once. NULLs allow nothing, as SQL's `=` never matches NULL.
#[derive(Clone, Debug, PartialEq)]
pub struct Allowed {
    pub column: RequestColumn,
    /// `None`: the condition does not restrict the column (`= ALL` of an
    /// empty array is true for every value).
    pub values: Option<Vec<Arg>>,
}

impl Allowed {
    /// What a condition allows, from the value(s) its expression evaluated to.
    pub fn new(column: RequestColumn, compare: Compare, values: Vec<Option<Arg>>) -> Self {
        let values = match compare {
            Compare::Eq | Compare::Any => Some(dedup(values.into_iter().flatten())),
            Compare::All if values.is_empty() => None,
            Compare::All => {
                let has_null = values.iter().any(Option::is_none);
                let distinct = dedup(values.into_iter().flatten());
                // Only one repeated, non-NULL value can equal every element.
                Some(if !has_null && distinct.len() == 1 {
                    distinct
                } else {
                    Vec::new()
                })
            }
        };
        Allowed { column, values }
    }
}

fn dedup(values: impl Iterator<Item = Arg>) -> Vec<Arg> {
    let values: Vec<Arg> = values.collect();
    if values.len() < 2 {
        return values;
    }
    let mut seen = HashSet::with_capacity(values.len());
    values
        .into_iter()
        .filter(|v| seen.insert(v.key()))
        .collect()
}

/// The values the conditions allow for one column: the ones every condition
/// on it allows, in the order of the first. `None`: no condition on it.
fn candidates(conditions: &[Allowed], column: RequestColumn) -> Option<Vec<Arg>> {
    let mut result: Option<Vec<Arg>> = None;
    for values in conditions
        .iter()
        .filter(|c| c.column == column)
        .filter_map(|c| c.values.as_ref())
    {
        result = Some(match result {
            None => values.clone(),
            Some(prev) => {
                let keys: HashSet<String> = values.iter().map(Arg::key).collect();
                prev.into_iter()
                    .filter(|p| keys.contains(&p.key()))
                    .collect()
            }
        });
    }
    result
}

fn json_of(column: RequestColumn, a: Arg) -> Result<Json> {
    match a {
        Arg::Json(j) => Ok(j),
        Arg::Text(_) => Err(LambdaFdwError::QualValue(column.name())),
    }
}

fn text_of(column: RequestColumn, a: Arg) -> Result<String> {
    match a {
        Arg::Text(s) => Ok(s),
        Arg::Json(_) => Err(LambdaFdwError::QualValue(column.name())),
    }
}

/// The invocations a scan makes: one per combination of the values the
/// conditions give each request column (payloads in the order given), with
/// the table's defaults for columns no condition pins. `Ok(None)` when no
/// condition gives a payload at all: the scan must not invoke.
pub fn plan_invocations(
    conditions: &[Allowed],
    table: &TableOptions,
) -> Result<Option<Vec<PlannedInvocation>>> {
    let Some(payloads) = candidates(conditions, RequestColumn::Payload) else {
        return Ok(None);
    };
    let payloads = payloads
        .into_iter()
        .map(|a| json_of(RequestColumn::Payload, a))
        .collect::<Result<Vec<_>>>()?;

    let qualifiers: Vec<Option<String>> = match candidates(conditions, RequestColumn::Qualifier) {
        None => vec![table
            .qualifier
            .clone()
            .or_else(|| table.function.qualifier.clone())],
        Some(cs) => cs
            .into_iter()
            .map(|a| text_of(RequestColumn::Qualifier, a).map(Some))
            .collect::<Result<_>>()?,
    };
    let invocation_types: Vec<InvocationType> =
        match candidates(conditions, RequestColumn::InvocationType) {
            None => vec![table.invocation_type],
            Some(cs) => cs
                .into_iter()
                .map(|a| {
                    Ok(InvocationType::parse(&text_of(
                        RequestColumn::InvocationType,
                        a,
                    )?)?)
                })
                .collect::<Result<_>>()?,
        };
    let log_types: Vec<LogType> = match candidates(conditions, RequestColumn::LogType) {
        None => vec![table.log_type],
        Some(cs) => cs
            .into_iter()
            .map(|a| Ok(LogType::parse(&text_of(RequestColumn::LogType, a)?)?))
            .collect::<Result<_>>()?,
    };
    let contexts: Vec<Option<Json>> = match candidates(conditions, RequestColumn::Context) {
        None => vec![None],
        Some(cs) => cs
            .into_iter()
            .map(|a| json_of(RequestColumn::Context, a).map(Some))
            .collect::<Result<_>>()?,
    };

    let mut out = Vec::with_capacity(payloads.len());
    for payload in &payloads {
        for qualifier in &qualifiers {
            for invocation_type in &invocation_types {
                for log_type in &log_types {
                    for context in &contexts {
                        out.push(PlannedInvocation {
                            payload: payload.clone(),
                            qualifier: qualifier.clone(),
                            invocation_type: *invocation_type,
                            log_type: *log_type,
                            context: context.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn table(extra: &[(&str, &str)]) -> TableOptions {
        let mut m: HashMap<String, String> = HashMap::new();
        m.insert("function_name".into(), "f".into());
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        TableOptions::parse(&m).unwrap()
    }

    fn eq(column: RequestColumn, a: Arg) -> Allowed {
        Allowed::new(column, Compare::Eq, vec![Some(a)])
    }

    fn any(column: RequestColumn, values: Vec<Option<Arg>>) -> Allowed {
        Allowed::new(column, Compare::Any, values)
    }

    fn j(v: Json) -> Arg {
        Arg::Json(v)
    }

    fn s(v: &str) -> Arg {
        Arg::Text(v.into())
    }

    fn payloads(p: Vec<PlannedInvocation>) -> Vec<Json> {
        p.into_iter().map(|i| i.payload).collect()
    }

    use RequestColumn::{Context, Payload, Qualifier};
    const INVOCATION: RequestColumn = RequestColumn::InvocationType;
    const LOG: RequestColumn = RequestColumn::LogType;

    #[test]
    fn no_payload_means_no_invocation() {
        assert_eq!(plan_invocations(&[], &table(&[])).unwrap(), None);
        let only_qualifier = [eq(Qualifier, s("v1"))];
        assert_eq!(
            plan_invocations(&only_qualifier, &table(&[])).unwrap(),
            None
        );
    }

    #[test]
    fn single_payload_with_table_defaults() {
        let t = table(&[("qualifier", "prod"), ("log_type", "Tail")]);
        let p = plan_invocations(&[eq(Payload, j(json!({"a": 1})))], &t)
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            vec![PlannedInvocation {
                payload: json!({"a": 1}),
                qualifier: Some("prod".into()),
                invocation_type: InvocationType::RequestResponse,
                log_type: LogType::Tail,
                context: None,
            }]
        );
    }

    #[test]
    fn qualifier_from_function_name_is_the_default() {
        let t = table(&[("function_name", "f:live")]);
        let p = plan_invocations(&[eq(Payload, j(json!(1)))], &t)
            .unwrap()
            .unwrap();
        assert_eq!(p[0].qualifier.as_deref(), Some("live"));
    }

    #[test]
    fn payload_in_list_fans_out_in_order_without_duplicates() {
        let q = [any(
            Payload,
            vec![
                Some(j(json!({"n": 2}))),
                Some(j(json!({"n": 1}))),
                Some(j(json!({"n": 2}))),
            ],
        )];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(payloads(p), vec![json!({"n": 2}), json!({"n": 1})]);
    }

    #[test]
    fn equal_json_objects_are_one_payload_whatever_their_key_order() {
        let a: Json = serde_json::from_str(r#"{"a": 1, "b": 2}"#).unwrap();
        let b: Json = serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap();
        let q = [any(Payload, vec![Some(j(a)), Some(j(b))])];
        assert_eq!(plan_invocations(&q, &table(&[])).unwrap().unwrap().len(), 1);
    }

    #[test]
    fn nulls_invoke_nothing_and_the_other_values_still_do() {
        let q = [any(
            Payload,
            vec![None, Some(j(json!(1))), None, Some(j(json!(2)))],
        )];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(payloads(p), vec![json!(1), json!(2)]);
        // `payload = NULL` (a subquery that returned NULL or no row).
        let q = [Allowed::new(Payload, Compare::Eq, vec![None])];
        assert_eq!(plan_invocations(&q, &table(&[])).unwrap(), Some(vec![]));
        // An array of NULLs, or an empty array.
        let q = [any(Payload, vec![None, None])];
        assert_eq!(plan_invocations(&q, &table(&[])).unwrap(), Some(vec![]));
        let q = [any(Payload, vec![])];
        assert_eq!(plan_invocations(&q, &table(&[])).unwrap(), Some(vec![]));
        // A NULL qualifier matches no row either.
        let q = [
            eq(Payload, j(json!(1))),
            Allowed::new(Qualifier, Compare::Eq, vec![None]),
        ];
        assert_eq!(plan_invocations(&q, &table(&[])).unwrap(), Some(vec![]));
    }

    #[test]
    fn equal_all_allows_one_repeated_value_only() {
        let all = |v: Vec<Option<Arg>>| Allowed::new(Payload, Compare::All, v);
        let one = [all(vec![Some(j(json!(1))), Some(j(json!(1)))])];
        assert_eq!(
            payloads(plan_invocations(&one, &table(&[])).unwrap().unwrap()),
            vec![json!(1)]
        );
        let two = [all(vec![Some(j(json!(1))), Some(j(json!(2)))])];
        assert_eq!(plan_invocations(&two, &table(&[])).unwrap(), Some(vec![]));
        let null = [all(vec![Some(j(json!(1))), None])];
        assert_eq!(plan_invocations(&null, &table(&[])).unwrap(), Some(vec![]));
        // `= ALL('{}')` is true for every payload: it gives none.
        assert_eq!(plan_invocations(&[all(vec![])], &table(&[])).unwrap(), None);
    }

    #[test]
    fn request_columns_from_conditions_override_defaults() {
        let q = [
            eq(Payload, j(json!({}))),
            eq(Qualifier, s("v2")),
            eq(INVOCATION, s("Event")),
            eq(LOG, s("Tail")),
            eq(Context, j(json!({"custom": {"k": "v"}}))),
        ];
        let p = plan_invocations(&q, &table(&[("qualifier", "prod")]))
            .unwrap()
            .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].qualifier.as_deref(), Some("v2"));
        assert_eq!(p[0].invocation_type, InvocationType::Event);
        assert_eq!(p[0].log_type, LogType::Tail);
        assert_eq!(p[0].context, Some(json!({"custom": {"k": "v"}})));
    }

    #[test]
    fn several_lists_multiply() {
        let q = [
            any(Payload, vec![Some(j(json!(1))), Some(j(json!(2)))]),
            any(Qualifier, vec![Some(s("v1")), Some(s("v2"))]),
        ];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        let got: Vec<(Json, Option<String>)> =
            p.into_iter().map(|i| (i.payload, i.qualifier)).collect();
        assert_eq!(
            got,
            vec![
                (json!(1), Some("v1".into())),
                (json!(1), Some("v2".into())),
                (json!(2), Some("v1".into())),
                (json!(2), Some("v2".into())),
            ]
        );
    }

    #[test]
    fn contradictory_conditions_invoke_nothing() {
        let q = [eq(Payload, j(json!(1))), eq(Payload, j(json!(2)))];
        assert_eq!(plan_invocations(&q, &table(&[])).unwrap(), Some(vec![]));
        let q = [
            any(Payload, vec![Some(j(json!(1))), Some(j(json!(2)))]),
            eq(Payload, j(json!(2))),
        ];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(payloads(p), vec![json!(2)]);
    }

    #[test]
    fn bad_enum_values_in_conditions_are_errors() {
        let q = [eq(Payload, j(json!(1))), eq(INVOCATION, s("event"))];
        assert_eq!(
            plan_invocations(&q, &table(&[])).unwrap_err().to_string(),
            "invalid invocation_type \"event\""
        );
        let q = [eq(Payload, j(json!(1))), eq(LOG, s("tail"))];
        assert_eq!(
            plan_invocations(&q, &table(&[])).unwrap_err().to_string(),
            "invalid log_type \"tail\""
        );
    }

    #[test]
    fn a_large_fan_out_is_deduplicated_in_linear_time() {
        let values: Vec<Option<Arg>> = (0..20_000)
            .map(|n| Some(j(json!({"n": n % 10_000}))))
            .collect();
        let p = plan_invocations(&[any(Payload, values)], &table(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(p.len(), 10_000);
        assert_eq!(p[9_999].payload, json!({"n": 9_999}));
    }
}
