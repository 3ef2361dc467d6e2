//! Turning the pushed-down quals of a scan into the list of invocations it
//! makes. Pure: it sees wrappers' `Qual`s and the table's options only.

use serde_json::Value as Json;
use supabase_wrappers::prelude::{Cell, Qual, Value};

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

/// Candidate values for one request column. `None`: the query says nothing.
type Candidates = Option<Vec<Cell>>;

fn same_cell(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Json(x), Cell::Json(y)) => x.0 == y.0,
        (Cell::String(x), Cell::String(y)) => x == y,
        _ => false,
    }
}

fn dedup(cells: Vec<Cell>) -> Vec<Cell> {
    let mut out: Vec<Cell> = Vec::with_capacity(cells.len());
    for c in cells {
        if !out.iter().any(|o| same_cell(o, &c)) {
            out.push(c);
        }
    }
    out
}

/// The values an equality qual allows, or `None` if the qual does not pin
/// the column (another operator).
fn qual_values(q: &Qual) -> Option<Vec<Cell>> {
    if q.operator != "=" {
        return None;
    }
    match &q.value {
        Value::Cell(c) => Some(vec![c.clone()]),
        Value::Array(cells) if q.use_or => Some(dedup(cells.clone())),
        // `col = ALL(array)`: only a single repeated value can match.
        Value::Array(cells) => {
            let distinct = dedup(cells.clone());
            Some(if distinct.len() == 1 {
                distinct
            } else {
                Vec::new()
            })
        }
    }
}

fn candidates(quals: &[Qual], column: RequestColumn) -> Candidates {
    let mut result: Candidates = None;
    for q in quals.iter().filter(|q| q.field == column.name()) {
        if let Some(values) = qual_values(q) {
            result = Some(match result {
                None => values,
                // Several conditions on one column: only common values match.
                Some(prev) => prev
                    .into_iter()
                    .filter(|p| values.iter().any(|v| same_cell(p, v)))
                    .collect(),
            });
        }
    }
    result
}

fn json_of(column: RequestColumn, c: &Cell) -> Result<Json> {
    match c {
        Cell::Json(j) => Ok(j.0.clone()),
        _ => Err(LambdaFdwError::QualValue(column.name())),
    }
}

fn text_of(column: RequestColumn, c: &Cell) -> Result<String> {
    match c {
        Cell::String(s) => Ok(s.clone()),
        _ => Err(LambdaFdwError::QualValue(column.name())),
    }
}

/// The invocations a scan makes: one per combination of the values the
/// quals give each request column (payloads in the order written), with the
/// table's defaults for columns the query does not pin. `Ok(None)` when no
/// payload is given at all: the scan must not invoke.
pub fn plan_invocations(
    quals: &[Qual],
    table: &TableOptions,
) -> Result<Option<Vec<PlannedInvocation>>> {
    let Some(payloads) = candidates(quals, RequestColumn::Payload) else {
        return Ok(None);
    };
    let payloads = payloads
        .iter()
        .map(|c| json_of(RequestColumn::Payload, c))
        .collect::<Result<Vec<_>>>()?;

    let qualifiers: Vec<Option<String>> = match candidates(quals, RequestColumn::Qualifier) {
        None => vec![table
            .qualifier
            .clone()
            .or_else(|| table.function.qualifier.clone())],
        Some(cs) => cs
            .iter()
            .map(|c| text_of(RequestColumn::Qualifier, c).map(Some))
            .collect::<Result<_>>()?,
    };
    let invocation_types: Vec<InvocationType> =
        match candidates(quals, RequestColumn::InvocationType) {
            None => vec![table.invocation_type],
            Some(cs) => cs
                .iter()
                .map(|c| {
                    Ok(InvocationType::parse(&text_of(
                        RequestColumn::InvocationType,
                        c,
                    )?)?)
                })
                .collect::<Result<_>>()?,
        };
    let log_types: Vec<LogType> = match candidates(quals, RequestColumn::LogType) {
        None => vec![table.log_type],
        Some(cs) => cs
            .iter()
            .map(|c| Ok(LogType::parse(&text_of(RequestColumn::LogType, c)?)?))
            .collect::<Result<_>>()?,
    };
    let contexts: Vec<Option<Json>> = match candidates(quals, RequestColumn::Context) {
        None => vec![None],
        Some(cs) => cs
            .iter()
            .map(|c| json_of(RequestColumn::Context, c).map(Some))
            .collect::<Result<_>>()?,
    };

    let mut out = Vec::new();
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
    use pgrx::JsonB;
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

    fn eq(field: &str, cell: Cell) -> Qual {
        Qual {
            field: field.into(),
            operator: "=".into(),
            value: Value::Cell(cell),
            use_or: false,
            param: None,
        }
    }

    fn any(field: &str, cells: Vec<Cell>) -> Qual {
        Qual {
            field: field.into(),
            operator: "=".into(),
            value: Value::Array(cells),
            use_or: true,
            param: None,
        }
    }

    fn j(v: Json) -> Cell {
        Cell::Json(JsonB(v))
    }

    fn s(v: &str) -> Cell {
        Cell::String(v.into())
    }

    #[test]
    fn no_payload_means_no_invocation() {
        assert_eq!(plan_invocations(&[], &table(&[])).unwrap(), None);
        let only_qualifier = [eq("qualifier", s("v1"))];
        assert_eq!(
            plan_invocations(&only_qualifier, &table(&[])).unwrap(),
            None
        );
    }

    #[test]
    fn single_payload_with_table_defaults() {
        let t = table(&[("qualifier", "prod"), ("log_type", "Tail")]);
        let p = plan_invocations(&[eq("payload", j(json!({"a": 1})))], &t)
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
        let p = plan_invocations(&[eq("payload", j(json!(1)))], &t)
            .unwrap()
            .unwrap();
        assert_eq!(p[0].qualifier.as_deref(), Some("live"));
    }

    #[test]
    fn payload_in_list_fans_out_in_order_without_duplicates() {
        let q = [any(
            "payload",
            vec![j(json!({"n": 2})), j(json!({"n": 1})), j(json!({"n": 2}))],
        )];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        let payloads: Vec<Json> = p.into_iter().map(|i| i.payload).collect();
        assert_eq!(payloads, vec![json!({"n": 2}), json!({"n": 1})]);
    }

    #[test]
    fn request_columns_from_quals_override_defaults() {
        let q = [
            eq("payload", j(json!({}))),
            eq("qualifier", s("v2")),
            eq("invocation_type", s("Event")),
            eq("log_type", s("Tail")),
            eq("context", j(json!({"custom": {"k": "v"}}))),
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
            any("payload", vec![j(json!(1)), j(json!(2))]),
            any("qualifier", vec![s("v1"), s("v2")]),
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
        let q = [eq("payload", j(json!(1))), eq("payload", j(json!(2)))];
        assert_eq!(plan_invocations(&q, &table(&[])).unwrap(), Some(vec![]));
        let q = [
            any("payload", vec![j(json!(1)), j(json!(2))]),
            eq("payload", j(json!(2))),
        ];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].payload, json!(2));
    }

    #[test]
    fn other_operators_do_not_pin_a_column() {
        let mut ne = eq("qualifier", s("v1"));
        ne.operator = "<>".into();
        let q = [eq("payload", j(json!(1))), ne];
        let p = plan_invocations(&q, &table(&[])).unwrap().unwrap();
        assert_eq!(p[0].qualifier, None);
    }

    #[test]
    fn bad_enum_values_in_quals_are_errors() {
        let q = [
            eq("payload", j(json!(1))),
            eq("invocation_type", s("event")),
        ];
        assert_eq!(
            plan_invocations(&q, &table(&[])).unwrap_err().to_string(),
            "invalid invocation_type \"event\""
        );
        let q = [eq("payload", j(json!(1))), eq("log_type", s("tail"))];
        assert_eq!(
            plan_invocations(&q, &table(&[])).unwrap_err().to_string(),
            "invalid log_type \"tail\""
        );
    }
}
