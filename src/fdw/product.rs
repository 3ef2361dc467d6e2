//! Turning the request conditions of a scan, once their values are known,
//! into the invocations it makes: the distinct values of each request
//! column, whose combinations are the invocations, worked out one at a time
//! from their index (see [`Product`]); and the limit on how many one scan
//! may make. Pure: it sees evaluated values and the table's options only
//! (`executor` evaluates the conditions, `calls` invokes).
//!
//! Offers [`Compare`] (how a condition compares), [`Arg`] and [`Allowed`]
//! (what an evaluated condition allows), [`plan_invocations`] (the
//! [`Product`] of them), [`check_count`] (the limit), and [`Failure`] (the
//! first bad request, see [`Product::first_failure`]).

use std::collections::HashSet;

use serde_json::Value as Json;

use super::columns::RequestColumn;
use crate::error::{LambdaFdwError, Result};
use crate::settings::options::TableOptions;
use lambda_fdw_core::request::{InvocationType, LogType};

/// A JSON value held as its text, as serde_json serializes the parsed
/// value (object keys in order, no spaces): the bytes a request sends, and
/// equal texts for equal values (jsonb equality). A scan holds one per
/// distinct value of each condition; as text, an array of 100,000 small
/// objects costs a few dozen bytes a value instead of a parsed tree's
/// several hundred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JsonText(String);

impl JsonText {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Json> for JsonText {
    fn from(value: &Json) -> Self {
        JsonText(value.to_string())
    }
}

impl From<Json> for JsonText {
    fn from(value: Json) -> Self {
        JsonText::from(&value)
    }
}

/// A non-NULL value of a request column, as a condition gave it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg {
    Json(JsonText),
    Text(String),
}

impl Arg {
    /// Equal keys mean equal values.
    fn key(&self) -> &str {
        match self {
            Arg::Json(j) => j.as_str(),
            Arg::Text(t) => t,
        }
    }
}

/// How a condition compares its column with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compare {
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
pub(crate) struct Allowed {
    pub column: RequestColumn,
    /// `None`: the condition does not restrict the column (`= ALL` of an
    /// empty array is true for every value).
    pub values: Option<Vec<Arg>>,
}

impl Allowed {
    /// What a condition allows, from the value(s) its expression evaluated to.
    pub(crate) fn new(column: RequestColumn, compare: Compare, values: Vec<Option<Arg>>) -> Self {
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
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(values.len());
        values.iter().map(|v| seen.insert(v.key())).collect()
    };
    values
        .into_iter()
        .zip(first)
        .filter_map(|(v, first)| first.then_some(v))
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
                let keys: HashSet<&str> = values.iter().map(Arg::key).collect();
                prev.into_iter()
                    .filter(|p| keys.contains(p.key()))
                    .collect()
            }
        });
    }
    result
}

fn json_of(column: RequestColumn, a: Arg) -> Result<JsonText> {
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

/// One invocation a scan makes, as its row echoes it: borrowed from the
/// [`Product`] it belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PlannedInvocation<'a> {
    pub payload: &'a JsonText,
    pub qualifier: Option<&'a str>,
    pub invocation_type: InvocationType,
    pub log_type: LogType,
    pub context: Option<&'a JsonText>,
}

/// Where one invocation's values are in each list of a [`Product`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub payload: usize,
    pub qualifier: usize,
    pub invocation_type: usize,
    pub log_type: usize,
    pub context: usize,
}

/// The invocations a scan makes: one per combination of the values the
/// conditions give each request column, each list holding distinct values.
/// Invocation `i` is the `i`-th combination with payloads varying slowest,
/// then qualifiers, invocation types and log types, and contexts fastest
/// (the order of the nested loops the scan used to build them with). Nothing
/// is held per invocation: a scan of 300 payloads x 300 contexts holds 600
/// values, and works out each invocation from its index when it needs it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Product {
    pub payloads: Vec<JsonText>,
    pub qualifiers: Vec<Option<String>>,
    pub invocation_types: Vec<InvocationType>,
    pub log_types: Vec<LogType>,
    pub contexts: Vec<Option<JsonText>>,
}

/// Which check fails first among a product's invocations (see
/// [`Product::first_failure`]), by positions in its lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The qualifier does not give a function to call.
    Qualifier(usize),
    /// The payload cannot be sent with the invocation type (its size).
    Payload {
        payload: usize,
        invocation_type: usize,
    },
    /// The context cannot be sent as a client context.
    Context(usize),
}

impl Product {
    /// The lengths of the lists, payloads first.
    fn lengths(&self) -> [usize; 5] {
        [
            self.payloads.len(),
            self.qualifiers.len(),
            self.invocation_types.len(),
            self.log_types.len(),
            self.contexts.len(),
        ]
    }

    /// How many invocations the scan makes: the product of the lists'
    /// lengths, `u64::MAX` if that does not fit.
    pub(crate) fn count(&self) -> u64 {
        self.lengths()
            .iter()
            .try_fold(1u64, |n, &len| n.checked_mul(len as u64))
            .unwrap_or(u64::MAX)
    }

    /// The positions of invocation `index` (below [`Product::count`]).
    pub(crate) fn position(&self, index: usize) -> Position {
        let [_, qualifiers, invocation_types, log_types, contexts] = self.lengths();
        let mut rest = index;
        let mut next = |len: usize| {
            let at = rest % len;
            rest /= len;
            at
        };
        let context = next(contexts);
        let log_type = next(log_types);
        let invocation_type = next(invocation_types);
        let qualifier = next(qualifiers);
        Position {
            payload: rest,
            qualifier,
            invocation_type,
            log_type,
            context,
        }
    }

    /// Invocation `index` (below [`Product::count`]).
    pub(crate) fn get(&self, index: usize) -> PlannedInvocation<'_> {
        let at = self.position(index);
        PlannedInvocation {
            payload: &self.payloads[at.payload],
            qualifier: self.qualifiers[at.qualifier].as_deref(),
            invocation_type: self.invocation_types[at.invocation_type],
            log_type: self.log_types[at.log_type],
            context: self.contexts[at.context].as_ref(),
        }
    }

    /// The invocations in order (for a count already checked).
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = PlannedInvocation<'_>> + '_ {
        let count = usize::try_from(self.count()).unwrap_or(usize::MAX);
        (0..count).map(|i| self.get(i))
    }

    /// The first invocation, in the product's order, that fails a check,
    /// when each invocation is checked as a scan once checked every request
    /// before its first call: its qualifier, then its payload for its
    /// invocation type, then its context. Each check depends on one list
    /// (two for the payload), so this takes a few steps per value, not one
    /// per invocation; a product with no invocation checks nothing.
    pub(crate) fn first_failure(
        &self,
        bad_qualifier: impl Fn(usize) -> bool,
        bad_payload: impl Fn(usize, usize) -> bool,
        bad_context: impl Fn(usize) -> bool,
    ) -> Option<Failure> {
        let lengths = self.lengths();
        if lengths.contains(&0) {
            return None;
        }
        let [payloads, qualifiers, invocation_types, _, contexts] = lengths;
        // Past a good qualifier and payload, the first bad context fails the
        // invocation (whatever its log type).
        let bad_context = (0..contexts).find(|&c| bad_context(c));
        // With no bad qualifier, every qualifier gives a payload the same
        // outcome: the first one stands for all of them.
        let qualifiers = if (0..qualifiers).any(&bad_qualifier) {
            qualifiers
        } else {
            1
        };
        for payload in 0..payloads {
            for qualifier in 0..qualifiers {
                if bad_qualifier(qualifier) {
                    return Some(Failure::Qualifier(qualifier));
                }
                for invocation_type in 0..invocation_types {
                    if bad_payload(payload, invocation_type) {
                        return Some(Failure::Payload {
                            payload,
                            invocation_type,
                        });
                    }
                    if let Some(context) = bad_context {
                        return Some(Failure::Context(context));
                    }
                }
            }
        }
        None
    }
}

/// How a product's count reads in messages: its lists longer than one,
/// e.g. "300 payloads x 300 contexts".
fn factors(product: &Product) -> String {
    let names = [
        "payloads",
        "qualifiers",
        "invocation types",
        "log types",
        "contexts",
    ];
    let parts: Vec<String> = product
        .lengths()
        .iter()
        .zip(names)
        .filter(|(&len, _)| len > 1)
        .map(|(len, name)| format!("{len} {name}"))
        .collect();
    if parts.is_empty() {
        "1 payload".to_string()
    } else {
        parts.join(" x ")
    }
}

/// The number of invocations of `product` (its rows), refused when the
/// calls they take are more than `limit` (the setting
/// lambda_fdw.max_scan_invocations) before anything is sent. Batched, with
/// up to `batch_size` payloads a call, a call carries many invocations.
pub(crate) fn check_count(
    product: &Product,
    limit: u64,
    function: &str,
    batch_size: usize,
) -> Result<usize> {
    let count = product.count();
    let payloads = product.payloads.len() as u64;
    let calls = if batch_size > 1 && payloads > 0 {
        (count / payloads).saturating_mul(payloads.div_ceil(batch_size as u64))
    } else {
        count
    };
    match usize::try_from(count) {
        Ok(n) if calls <= limit => Ok(n),
        _ => Err(LambdaFdwError::TooManyInvocations {
            function: function.to_string(),
            invocations: calls,
            limit,
            factors: if batch_size > 1 {
                format!("{} in batches of {batch_size}", factors(product))
            } else {
                factors(product)
            },
        }),
    }
}

/// The invocations a scan makes (see [`Product`]), with the table's defaults
/// for columns no condition pins. `Ok(None)` when no condition gives a
/// payload at all: the scan must not invoke.
pub(crate) fn plan_invocations(
    conditions: &[Allowed],
    table: &TableOptions,
) -> Result<Option<Product>> {
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
    let contexts: Vec<Option<JsonText>> = match candidates(conditions, RequestColumn::Context) {
        None => vec![None],
        Some(cs) => cs
            .into_iter()
            .map(|a| json_of(RequestColumn::Context, a).map(Some))
            .collect::<Result<_>>()?,
    };
    Ok(Some(Product {
        payloads,
        qualifiers,
        invocation_types,
        log_types,
        contexts,
    }))
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
        Arg::Json(v.into())
    }

    fn s(v: &str) -> Arg {
        Arg::Text(v.into())
    }

    /// An invocation, owned, to compare with.
    #[derive(Clone, Debug, PartialEq)]
    struct Planned {
        payload: Json,
        qualifier: Option<String>,
        invocation_type: InvocationType,
        log_type: LogType,
        context: Option<Json>,
    }

    impl From<PlannedInvocation<'_>> for Planned {
        fn from(p: PlannedInvocation<'_>) -> Self {
            let parse = |t: &JsonText| serde_json::from_str(t.as_str()).unwrap();
            Planned {
                payload: parse(p.payload),
                qualifier: p.qualifier.map(str::to_string),
                invocation_type: p.invocation_type,
                log_type: p.log_type,
                context: p.context.map(parse),
            }
        }
    }

    /// The invocations planned, in order.
    fn plan(conditions: &[Allowed], t: &TableOptions) -> Result<Option<Vec<Planned>>> {
        Ok(plan_invocations(conditions, t)?.map(|p| p.iter().map(Planned::from).collect()))
    }

    fn payloads(p: Vec<Planned>) -> Vec<Json> {
        p.into_iter().map(|i| i.payload).collect()
    }

    use RequestColumn::{Context, Payload, Qualifier};
    const INVOCATION: RequestColumn = RequestColumn::InvocationType;
    const LOG: RequestColumn = RequestColumn::LogType;

    #[test]
    fn no_payload_means_no_invocation() {
        assert_eq!(plan(&[], &table(&[])).unwrap(), None);
        let only_qualifier = [eq(Qualifier, s("v1"))];
        assert_eq!(plan(&only_qualifier, &table(&[])).unwrap(), None);
    }

    #[test]
    fn single_payload_with_table_defaults() {
        let t = table(&[("qualifier", "prod"), ("log_type", "Tail")]);
        let p = plan(&[eq(Payload, j(json!({"a": 1})))], &t)
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            vec![Planned {
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
        let p = plan(&[eq(Payload, j(json!(1)))], &t).unwrap().unwrap();
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
        let p = plan(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(payloads(p), vec![json!({"n": 2}), json!({"n": 1})]);
    }

    #[test]
    fn equal_json_objects_are_one_payload_whatever_their_key_order() {
        let a: Json = serde_json::from_str(r#"{"a": 1, "b": 2}"#).unwrap();
        let b: Json = serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap();
        let q = [any(Payload, vec![Some(j(a)), Some(j(b))])];
        assert_eq!(plan(&q, &table(&[])).unwrap().unwrap().len(), 1);
    }

    #[test]
    fn nulls_invoke_nothing_and_the_other_values_still_do() {
        let q = [any(
            Payload,
            vec![None, Some(j(json!(1))), None, Some(j(json!(2)))],
        )];
        let p = plan(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(payloads(p), vec![json!(1), json!(2)]);
        // `payload = NULL` (a subquery that returned NULL or no row).
        let q = [Allowed::new(Payload, Compare::Eq, vec![None])];
        assert_eq!(plan(&q, &table(&[])).unwrap(), Some(vec![]));
        // An array of NULLs, or an empty array.
        let q = [any(Payload, vec![None, None])];
        assert_eq!(plan(&q, &table(&[])).unwrap(), Some(vec![]));
        let q = [any(Payload, vec![])];
        assert_eq!(plan(&q, &table(&[])).unwrap(), Some(vec![]));
        // A NULL qualifier matches no row either.
        let q = [
            eq(Payload, j(json!(1))),
            Allowed::new(Qualifier, Compare::Eq, vec![None]),
        ];
        assert_eq!(plan(&q, &table(&[])).unwrap(), Some(vec![]));
    }

    #[test]
    fn equal_all_allows_one_repeated_value_only() {
        let all = |v: Vec<Option<Arg>>| Allowed::new(Payload, Compare::All, v);
        let one = [all(vec![Some(j(json!(1))), Some(j(json!(1)))])];
        assert_eq!(
            payloads(plan(&one, &table(&[])).unwrap().unwrap()),
            vec![json!(1)]
        );
        let two = [all(vec![Some(j(json!(1))), Some(j(json!(2)))])];
        assert_eq!(plan(&two, &table(&[])).unwrap(), Some(vec![]));
        let null = [all(vec![Some(j(json!(1))), None])];
        assert_eq!(plan(&null, &table(&[])).unwrap(), Some(vec![]));
        // `= ALL('{}')` is true for every payload: it gives none.
        assert_eq!(plan(&[all(vec![])], &table(&[])).unwrap(), None);
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
        let p = plan(&q, &table(&[("qualifier", "prod")])).unwrap().unwrap();
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
        let p = plan(&q, &table(&[])).unwrap().unwrap();
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
        assert_eq!(plan(&q, &table(&[])).unwrap(), Some(vec![]));
        let q = [
            any(Payload, vec![Some(j(json!(1))), Some(j(json!(2)))]),
            eq(Payload, j(json!(2))),
        ];
        let p = plan(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(payloads(p), vec![json!(2)]);
    }

    #[test]
    fn bad_enum_values_in_conditions_are_errors() {
        let q = [eq(Payload, j(json!(1))), eq(INVOCATION, s("event"))];
        assert_eq!(
            plan(&q, &table(&[])).unwrap_err().to_string(),
            "invalid invocation_type \"event\""
        );
        let q = [eq(Payload, j(json!(1))), eq(LOG, s("tail"))];
        assert_eq!(
            plan(&q, &table(&[])).unwrap_err().to_string(),
            "invalid log_type \"tail\""
        );
    }

    #[test]
    fn a_large_fan_out_is_deduplicated_in_linear_time() {
        let values: Vec<Option<Arg>> = (0..20_000)
            .map(|n| Some(j(json!({"n": n % 10_000}))))
            .collect();
        let p = plan(&[any(Payload, values)], &table(&[])).unwrap().unwrap();
        assert_eq!(p.len(), 10_000);
        assert_eq!(p[9_999].payload, json!({"n": 9_999}));
    }

    fn product(lengths: [usize; 5]) -> Product {
        let [p, q, t, l, c] = lengths;
        let types = [
            InvocationType::RequestResponse,
            InvocationType::Event,
            InvocationType::DryRun,
        ];
        Product {
            payloads: (0..p).map(|i| json!(i).into()).collect(),
            qualifiers: (0..q).map(|i| Some(format!("v{i}"))).collect(),
            invocation_types: (0..t).map(|i| types[i % 3]).collect(),
            log_types: (0..l)
                .map(|i| [LogType::None, LogType::Tail][i % 2])
                .collect(),
            contexts: (0..c).map(|i| Some(json!({ "c": i }).into())).collect(),
        }
    }

    /// The invocations as the scan built them before they were worked out
    /// by index: nested loops, payloads outermost, contexts innermost.
    fn nested_loops(p: &Product) -> Vec<Planned> {
        let mut out = Vec::new();
        for payload in &p.payloads {
            for qualifier in &p.qualifiers {
                for &invocation_type in &p.invocation_types {
                    for &log_type in &p.log_types {
                        for context in &p.contexts {
                            out.push(Planned {
                                payload: serde_json::from_str(payload.as_str()).unwrap(),
                                qualifier: qualifier.clone(),
                                invocation_type,
                                log_type,
                                context: context
                                    .as_ref()
                                    .map(|c| serde_json::from_str(c.as_str()).unwrap()),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn invocations_by_index_come_in_the_order_of_the_nested_loops() {
        for lengths in [
            [1, 1, 1, 1, 1],
            [3, 2, 3, 2, 2],
            [2, 1, 1, 1, 5],
            [4, 3, 1, 2, 1],
            [1, 4, 2, 1, 3],
        ] {
            let p = product(lengths);
            let expected = nested_loops(&p);
            assert_eq!(p.count(), expected.len() as u64, "{lengths:?}");
            let got: Vec<Planned> = p.iter().map(Planned::from).collect();
            assert_eq!(got, expected, "{lengths:?}");
            for (i, e) in expected.iter().enumerate() {
                assert_eq!(&Planned::from(p.get(i)), e);
            }
        }
        // An empty list (a NULL, contradictory conditions) means nothing.
        for empty in 0..5 {
            let mut lengths = [2; 5];
            lengths[empty] = 0;
            let p = product(lengths);
            assert_eq!(p.count(), 0);
            assert_eq!(p.iter().count(), 0);
        }
    }

    #[test]
    fn two_lists_of_300_hold_600_values_for_90_000_invocations() {
        let list = |key: &str| -> Vec<Option<Arg>> {
            (0..300).map(|n| Some(j(json!({ key: n })))).collect()
        };
        let q = [any(Payload, list("p")), any(Context, list("c"))];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        assert_eq!((p.payloads.len(), p.contexts.len()), (300, 300));
        assert_eq!(p.count(), 90_000);
        let first = p.get(0);
        assert_eq!(
            (first.payload, first.context),
            (
                &JsonText::from(json!({"p": 0})),
                Some(&JsonText::from(json!({"c": 0})))
            )
        );
        let second = p.get(1);
        assert_eq!(
            (second.payload, second.context),
            (
                &JsonText::from(json!({"p": 0})),
                Some(&JsonText::from(json!({"c": 1})))
            )
        );
        let last = p.get(89_999);
        assert_eq!(
            (last.payload, last.context),
            (
                &JsonText::from(json!({"p": 299})),
                Some(&JsonText::from(json!({"c": 299})))
            )
        );
        assert_eq!(
            p.position(300 * 7 + 5),
            Position {
                payload: 7,
                qualifier: 0,
                invocation_type: 0,
                log_type: 0,
                context: 5
            }
        );
    }

    #[test]
    fn batched_the_cap_counts_calls() {
        // 300 payloads in batches of 7: 43 calls per context.
        let p = product([300, 1, 1, 1, 2]);
        assert_eq!(check_count(&p, 86, "f", 7).unwrap(), 600);
        let e = check_count(&p, 85, "f", 7).unwrap_err();
        assert!(matches!(
            e,
            LambdaFdwError::TooManyInvocations { invocations: 86, limit: 85, ref factors, .. }
                if factors == "300 payloads x 2 contexts in batches of 7"
        ));
    }

    #[test]
    fn the_count_is_capped() {
        let p = product([300, 1, 1, 1, 300]);
        assert_eq!(check_count(&p, 90_000, "f", 1).unwrap(), 90_000);
        assert_eq!(check_count(&p, u64::MAX, "f", 1).unwrap(), 90_000);
        let e = check_count(&p, 89_999, "f", 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scan would invoke lambda function f 90000 times, more than lambda_fdw.max_scan_invocations (89999)"
        );
        assert!(matches!(
            e,
            LambdaFdwError::TooManyInvocations { invocations: 90_000, limit: 89_999, ref factors, .. }
                if factors == "300 payloads x 300 contexts"
        ));
        assert_eq!(
            factors(&product([2, 3, 2, 2, 1])),
            "2 payloads x 3 qualifiers x 2 invocation types x 2 log types"
        );
        assert_eq!(factors(&product([1, 1, 1, 1, 1])), "1 payload");
        assert_eq!(
            check_count(&product([1, 1, 1, 1, 1]), 1, "f", 1).unwrap(),
            1
        );
        assert!(check_count(&product([2, 1, 1, 1, 1]), 1, "f", 1).is_err());
        assert_eq!(
            check_count(&product([0, 5, 1, 1, 9]), 1, "f", 1).unwrap(),
            0
        );
    }

    #[test]
    fn a_count_too_large_to_compute_is_refused() {
        // 10^4 values in each of the five lists: 10^20 invocations, more
        // than a u64 holds.
        let p = Product {
            payloads: vec![JsonText::from(Json::Null); 10_000],
            qualifiers: vec![None; 10_000],
            invocation_types: vec![InvocationType::Event; 10_000],
            log_types: vec![LogType::None; 10_000],
            contexts: vec![None; 10_000],
        };
        assert_eq!(p.count(), u64::MAX);
        assert!(matches!(
            check_count(&p, u64::MAX - 1, "f", 1),
            Err(LambdaFdwError::TooManyInvocations {
                invocations: u64::MAX,
                ..
            })
        ));
    }

    /// The first failure as the scan found it when it built every request
    /// in order: qualifier, then payload, then context, for each.
    fn first_failure_by_brute_force(
        p: &Product,
        bad_qualifier: &[bool],
        bad_payload: &dyn Fn(usize, usize) -> bool,
        bad_context: &[bool],
    ) -> Option<Failure> {
        let count = p.count() as usize;
        (0..count).find_map(|i| {
            let at = p.position(i);
            if bad_qualifier[at.qualifier] {
                Some(Failure::Qualifier(at.qualifier))
            } else if bad_payload(at.payload, at.invocation_type) {
                Some(Failure::Payload {
                    payload: at.payload,
                    invocation_type: at.invocation_type,
                })
            } else if bad_context[at.context] {
                Some(Failure::Context(at.context))
            } else {
                None
            }
        })
    }

    #[test]
    fn the_first_failure_is_the_one_the_requests_in_order_would_meet() {
        // A small linear congruential generator: the same cases every run.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |below: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % below
        };
        let mut failures = 0;
        for _ in 0..3_000 {
            let lengths = [0; 5].map(|_| next(4) as usize);
            let p = product(lengths);
            // Each value is bad with a probability of about 1/8.
            let mut flags = |n: usize| (0..n).map(|_| next(8) == 0).collect::<Vec<bool>>();
            let bad_q = flags(lengths[1]);
            let bad_c = flags(lengths[4]);
            let bad_p = flags(lengths[0] * lengths[2]);
            let types = lengths[2];
            let bad_payload = |payload: usize, t: usize| bad_p[payload * types + t];
            let expected = first_failure_by_brute_force(&p, &bad_q, &bad_payload, &bad_c);
            let got = p.first_failure(|q| bad_q[q], bad_payload, |c| bad_c[c]);
            assert_eq!(got, expected, "{lengths:?} {bad_q:?} {bad_p:?} {bad_c:?}");
            failures += usize::from(got.is_some());
        }
        // The cases are not all trivial.
        assert!(failures > 300, "{failures}");
    }

    #[test]
    fn checking_a_large_product_takes_steps_per_value() {
        // 300 x 300 x 3: counting the checks made shows none is per invocation.
        let p = product([300, 300, 3, 1, 1]);
        let calls = std::cell::Cell::new(0u64);
        let got = p.first_failure(
            |_| {
                calls.set(calls.get() + 1);
                false
            },
            |payload, t| {
                calls.set(calls.get() + 1);
                payload == 299 && t == 2
            },
            |_| false,
        );
        assert_eq!(
            got,
            Some(Failure::Payload {
                payload: 299,
                invocation_type: 2
            })
        );
        // 300 qualifiers looked at once, the first one again per payload,
        // every payload with every invocation type: 1,500 checks for 270,000
        // invocations.
        assert_eq!(calls.get(), 300 + 300 + 300 * 3);
    }
}
