//! The column model of a lambda_fdw foreign table: which names exist, which
//! types they may have, and how a column's type decides its cell. Offers
//! [`RequestColumn`] and [`ColumnKind`], [`column_kind`] (one column),
//! [`slot_columns`] (a relation's columns by slot position) and
//! [`check_table`] (a whole table: its columns, and its function against its
//! server's region).

use pgrx::pg_sys::{self, Oid};

use crate::error::{LambdaFdwError, Result};
use crate::pg::catalog;
use crate::settings::options::{ServerOptions, TableOptions};

/// Request columns: the query sets them, the row echoes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestColumn {
    Payload,
    Qualifier,
    InvocationType,
    LogType,
    Context,
}

impl RequestColumn {
    const ALL: [RequestColumn; 5] = [
        Self::Payload,
        Self::Qualifier,
        Self::InvocationType,
        Self::LogType,
        Self::Context,
    ];

    /// The request column of this name, if it is one.
    pub(crate) fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Payload => "payload",
            Self::Qualifier => "qualifier",
            Self::InvocationType => "invocation_type",
            Self::LogType => "log_type",
            Self::Context => "context",
        }
    }
}

/// Every column a lambda_fdw table can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    Request(RequestColumn),
    StatusCode,
    /// `json_text`: the column is `json` (the response text as returned)
    /// rather than `jsonb`.
    Response {
        json_text: bool,
    },
    ExecutedVersion,
    LogResult,
    FunctionError,
}

impl ColumnKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Request(r) => r.name(),
            Self::StatusCode => "status_code",
            Self::Response { .. } => "response",
            Self::ExecutedVersion => "executed_version",
            Self::LogResult => "log_result",
            Self::FunctionError => "function_error",
        }
    }
}

#[cfg(test)]
const COLUMN_NAMES: &[&str] = &[
    "payload",
    "qualifier",
    "invocation_type",
    "log_type",
    "context",
    "status_code",
    "response",
    "executed_version",
    "log_result",
    "function_error",
];

fn type_name(oid: Oid) -> String {
    match oid {
        pg_sys::JSONOID => "json".into(),
        pg_sys::JSONBOID => "jsonb".into(),
        pg_sys::TEXTOID => "text".into(),
        pg_sys::INT4OID => "integer".into(),
        pg_sys::INT8OID => "bigint".into(),
        pg_sys::INT2OID => "smallint".into(),
        pg_sys::VARCHAROID => "character varying".into(),
        other => format!("type with oid {}", other.to_u32()),
    }
}

/// Classifies a column by name and type, or says what is wrong with it.
pub(crate) fn column_kind(name: &str, type_oid: Oid) -> Result<ColumnKind> {
    let wrong = |expected: &'static str| LambdaFdwError::ColumnType {
        column: name.to_string(),
        expected,
        actual: type_name(type_oid),
    };
    let text = |kind: ColumnKind| {
        if type_oid == pg_sys::TEXTOID {
            Ok(kind)
        } else {
            Err(wrong("text"))
        }
    };
    let jsonb_request = |col: RequestColumn| {
        if type_oid == pg_sys::JSONBOID {
            Ok(ColumnKind::Request(col))
        } else {
            Err(wrong("jsonb"))
        }
    };
    match name {
        "payload" => jsonb_request(RequestColumn::Payload),
        "context" => jsonb_request(RequestColumn::Context),
        "qualifier" => text(ColumnKind::Request(RequestColumn::Qualifier)),
        "invocation_type" => text(ColumnKind::Request(RequestColumn::InvocationType)),
        "log_type" => text(ColumnKind::Request(RequestColumn::LogType)),
        "status_code" => {
            if type_oid == pg_sys::INT4OID {
                Ok(ColumnKind::StatusCode)
            } else {
                Err(wrong("integer"))
            }
        }
        "response" => match type_oid {
            pg_sys::JSONBOID => Ok(ColumnKind::Response { json_text: false }),
            pg_sys::JSONOID => Ok(ColumnKind::Response { json_text: true }),
            _ => Err(wrong("jsonb or json")),
        },
        "executed_version" => text(ColumnKind::ExecutedVersion),
        "log_result" => text(ColumnKind::LogResult),
        "function_error" => text(ColumnKind::FunctionError),
        other => Err(LambdaFdwError::UnknownColumn(other.to_string())),
    }
}

/// The live columns of a relation's descriptor that `wanted` accepts (by
/// attribute number), as slot position and kind; the first column that is
/// not a lambda_fdw column is an error.
///
/// # Safety
/// `tupdesc` is a valid tuple descriptor.
pub(crate) unsafe fn slot_columns(
    tupdesc: pg_sys::TupleDesc,
    wanted: impl Fn(i16) -> bool,
) -> Result<Vec<(usize, ColumnKind)>> {
    // SAFETY: per the contract; borrowed, not released (PgTupleDesc from
    // from_pg_unchecked does not free the descriptor).
    let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked(tupdesc) };
    let mut out = Vec::new();
    for i in 0..desc.len() {
        let Some(attr) = desc.get(i) else {
            continue;
        };
        if attr.attisdropped || !wanted(i as i16 + 1) {
            continue;
        }
        let name = pgrx::name_data_to_str(&attr.attname);
        out.push((i, column_kind(name, attr.atttypid)?));
    }
    Ok(out)
}

/// Checks a lambda_fdw foreign table as a whole: every column, and its
/// function name against its server's region.
pub(crate) fn check_table(relid: Oid) -> Result<()> {
    for (name, type_oid) in catalog::relation_columns(relid) {
        column_kind(&name, type_oid)?;
    }
    let (table, server) = catalog::foreign_table_options(relid)?;
    let table = TableOptions::parse(&table)?;
    let server = ServerOptions::parse(&catalog::server_options(server)?)?;
    table.check_region(&server.region)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_column_has_a_kind() {
        let ty = |n: &str| match n {
            "payload" | "context" => pg_sys::JSONBOID,
            "response" => pg_sys::JSONOID,
            "status_code" => pg_sys::INT4OID,
            _ => pg_sys::TEXTOID,
        };
        for n in COLUMN_NAMES {
            assert!(column_kind(n, ty(n)).is_ok(), "{n}");
        }
        assert_eq!(
            column_kind("response", pg_sys::JSONBOID).unwrap(),
            ColumnKind::Response { json_text: false }
        );
    }

    #[test]
    fn request_columns_by_name() {
        for c in RequestColumn::ALL {
            assert_eq!(RequestColumn::named(c.name()), Some(c));
        }
        assert_eq!(RequestColumn::named("status_code"), None);
        assert_eq!(RequestColumn::named("Payload"), None);
    }

    #[test]
    fn wrong_names_and_types() {
        assert_eq!(
            column_kind("result", pg_sys::JSONBOID)
                .unwrap_err()
                .to_string(),
            "column \"result\" is not a lambda_fdw column"
        );
        assert_eq!(
            column_kind("payload", pg_sys::JSONOID)
                .unwrap_err()
                .to_string(),
            "column \"payload\" must be of type jsonb, not json"
        );
        assert_eq!(
            column_kind("status_code", pg_sys::INT8OID)
                .unwrap_err()
                .to_string(),
            "column \"status_code\" must be of type integer, not bigint"
        );
        assert_eq!(
            column_kind("qualifier", pg_sys::VARCHAROID)
                .unwrap_err()
                .to_string(),
            "column \"qualifier\" must be of type text, not character varying"
        );
    }
}
