//! IMPORT FOREIGN SCHEMA: one foreign table per Lambda function of the
//! server's region, listed with ListFunctions through the server's endpoint
//! and the caller's user mapping.
//!
//! PostgreSQL runs the CREATE FOREIGN TABLE statements returned here in the
//! IMPORT's own transaction (so an error leaves nothing half-made), puts
//! them in the local schema, and keeps only the tables LIMIT TO / EXCEPT
//! allow, by table name; the same filter is applied here first, by function
//! name, so that only the tables asked for are described.
//!
//! Offers the ImportForeignSchema callback, [`import_foreign_schema`].

use std::ffi::{c_char, CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::error::{raise, LambdaFdwError, Result};
use crate::pg::catalog;
use crate::pg::PG_INTERRUPTS;
use crate::settings::options::{named, ImportOptions, OptionsFor, ServerOptions};
use crate::settings::route;
use lambda_fdw_core::{block_on, client_for};

/// The one remote schema: every function of the region.
const REMOTE_SCHEMA: &str = "lambda";

/// The columns of an imported table, in the documented order.
const COLUMNS: &str = "payload jsonb, qualifier text, invocation_type text, log_type text, \
context jsonb, status_code integer, response jsonb, executed_version text, log_result text, \
function_error text";

/// LIMIT TO / EXCEPT, with the names given.
#[derive(Debug, PartialEq, Eq)]
enum Filter {
    All,
    LimitTo(Vec<String>),
    Except(Vec<String>),
}

/// The functions to import, in order, with their table names; `functions`
/// as ListFunctions gave them.
///
/// LIMIT TO keeps what it names; as PostgreSQL then keeps only tables whose
/// name it lists, with a prefix it must name the tables (prefix included),
/// and a bare function name there is an error rather than nothing imported.
/// EXCEPT drops a function named either way.
fn select(functions: &[String], filter: &Filter, prefix: &str) -> Result<Vec<(String, String)>> {
    if let Filter::LimitTo(names) = filter {
        if !prefix.is_empty() {
            if let Some(bare) = names.iter().find(|n| functions.contains(n)) {
                return Err(LambdaFdwError::ImportLimitToPrefix {
                    name: bare.clone(),
                    prefix: prefix.to_string(),
                });
            }
        }
    }
    Ok(functions
        .iter()
        .map(|f| (f.clone(), format!("{prefix}{f}")))
        .filter(|(function, table)| match filter {
            Filter::All => true,
            Filter::LimitTo(names) => names.contains(table),
            Filter::Except(names) => !names.contains(function) && !names.contains(table),
        })
        .collect())
}

/// A string constant, for OPTIONS.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The statement that makes the table `table` for `function`.
fn create_table(
    server: &str,
    function: &str,
    table: &str,
    options: &ImportOptions,
    quote_ident: impl Fn(&str) -> String,
) -> String {
    let mut opts = vec![format!("function_name {}", literal(function))];
    opts.extend(
        options
            .table_options
            .iter()
            .map(|(k, v)| format!("{k} {}", literal(v))),
    );
    format!(
        "CREATE FOREIGN TABLE {} ({COLUMNS}) SERVER {} OPTIONS ({})",
        quote_ident(table),
        quote_ident(server),
        opts.join(", ")
    )
}

/// PostgreSQL's quoting of an identifier (keywords, case, other characters).
fn quote_identifier(name: &str) -> String {
    let Ok(c) = CString::new(name) else {
        return format!("\"{}\"", name.replace('"', "\"\""));
    };
    // SAFETY: quote_identifier reads a NUL-terminated string and returns
    // it, or a palloc'd quoted copy, which is read at once.
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The statements for `stmt`, after listing the functions.
///
/// # Safety
/// `stmt` is the statement PostgreSQL passes to ImportForeignSchema.
unsafe fn statements(
    stmt: *mut pg_sys::ImportForeignSchemaStmt,
    server: pg_sys::Oid,
) -> Result<Vec<String>> {
    // SAFETY: per the contract: the statement's strings and lists are
    // live parse-tree nodes (RangeVars and DefElems) for this call.
    let (remote, filter, options) = unsafe {
        let remote = text((*stmt).remote_schema);
        let names = PgList::<pg_sys::RangeVar>::from_pg((*stmt).table_list)
            .iter_ptr()
            .map(|rv| text((*rv).relname))
            .collect();
        let filter = match (*stmt).list_type {
            pg_sys::ImportForeignSchemaType::FDW_IMPORT_SCHEMA_LIMIT_TO => Filter::LimitTo(names),
            pg_sys::ImportForeignSchemaType::FDW_IMPORT_SCHEMA_EXCEPT => Filter::Except(names),
            _ => Filter::All,
        };
        let options: Vec<String> = PgList::<pg_sys::DefElem>::from_pg((*stmt).options)
            .iter_ptr()
            .map(|d| format!("{}={}", text((*d).defname), text(pg_sys::defGetString(d))))
            .collect();
        (remote, filter, options)
    };
    if remote != REMOTE_SCHEMA {
        return Err(LambdaFdwError::NoRemoteSchema {
            asked: remote,
            remote: REMOTE_SCHEMA,
        });
    }
    let options = ImportOptions::parse(&named(OptionsFor::Import, &options)?)?;
    let (server_ref, server_options) = catalog::server(server)?;
    // The gate of a foreign table's calls: USAGE, and credentials of the
    // caller's own unless a superuser allowed the server's identity.
    // SAFETY: GetUserId has no preconditions inside a transaction.
    let user = unsafe { pg_sys::GetUserId() };
    let signed = route::table_signing(&server_ref, &ServerOptions::parse(&server_options)?, user)?;
    let client = client_for(&signed.settings, &PG_INTERRUPTS)?;
    let functions = block_on(client.list_function_names(), &PG_INTERRUPTS)??;
    Ok(select(&functions, &filter, &options.prefix)?
        .into_iter()
        .map(|(function, table)| {
            create_table(
                &server_ref.name,
                &function,
                &table,
                &options,
                quote_identifier,
            )
        })
        .collect())
}

/// ImportForeignSchema.
#[pg_guard]
pub unsafe extern "C-unwind" fn import_foreign_schema(
    stmt: *mut pg_sys::ImportForeignSchemaStmt,
    server: pg_sys::Oid,
) -> *mut pg_sys::List {
    // SAFETY: PostgreSQL's own statement.
    let commands = unsafe { statements(stmt, server) }.unwrap_or_else(|e| raise(e));
    let mut list = PgList::<c_char>::new();
    for command in commands {
        let Ok(c) = CString::new(command) else {
            continue;
        };
        // SAFETY: pstrdup copies the string into the current memory
        // context, where PostgreSQL reads the list.
        list.push(unsafe { pg_sys::pstrdup(c.as_ptr()) });
    }
    list.into_pg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn tables(picked: Vec<(String, String)>) -> Vec<String> {
        picked.into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn filters() {
        let fns = names(&["a", "b", "c"]);
        assert_eq!(
            tables(select(&fns, &Filter::All, "").unwrap()),
            names(&["a", "b", "c"])
        );
        assert_eq!(
            tables(select(&fns, &Filter::LimitTo(names(&["c", "a", "zz"])), "").unwrap()),
            names(&["a", "c"])
        );
        assert_eq!(
            tables(select(&fns, &Filter::Except(names(&["b"])), "").unwrap()),
            names(&["a", "c"])
        );
        // With a prefix: LIMIT TO names tables; EXCEPT either.
        assert_eq!(
            select(&fns, &Filter::LimitTo(names(&["fn_b"])), "fn_").unwrap(),
            vec![("b".to_string(), "fn_b".to_string())]
        );
        assert_eq!(
            tables(select(&fns, &Filter::Except(names(&["a", "fn_c"])), "fn_").unwrap()),
            names(&["fn_b"])
        );
        let e = select(&fns, &Filter::LimitTo(names(&["b"])), "fn_").unwrap_err();
        assert_eq!(
            e.to_string(),
            "LIMIT TO names the tables to create, and with prefix \"fn_\" function \"b\" becomes table \"fn_b\""
        );
    }

    #[test]
    fn statements_quote_and_carry_the_options() {
        let quote = |s: &str| format!("<{s}>");
        let mut map = HashMap::new();
        assert_eq!(
            create_table("srv", "Resize-Image", "Resize-Image", &ImportOptions::parse(&map).unwrap(), quote),
            format!("CREATE FOREIGN TABLE <Resize-Image> ({COLUMNS}) SERVER <srv> OPTIONS (function_name 'Resize-Image')")
        );
        map.insert("max_concurrency".to_string(), "4".to_string());
        map.insert("qualifier".to_string(), "live".to_string());
        map.insert("function_errors".to_string(), "return".to_string());
        map.insert("prefix".to_string(), "x_".to_string());
        let o = ImportOptions::parse(&map).unwrap();
        assert_eq!(o.prefix, "x_");
        assert_eq!(
            create_table("s", "f", "x_f", &o, quote),
            format!("CREATE FOREIGN TABLE <x_f> ({COLUMNS}) SERVER <s> OPTIONS (function_name 'f', qualifier 'live', function_errors 'return', max_concurrency '4')")
        );
        assert_eq!(literal("it's"), "'it''s'");
    }
}
