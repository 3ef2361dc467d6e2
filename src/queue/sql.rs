//! The worker's SQL on the queue table, and the functions that run it:
//! [`recover`] what a previous worker left in flight, [`claim`] due rows,
//! [`record`] outcomes, [`put_back`] rows never started, [`purge`] old
//! ones, and [`next_due`]. (`enqueue` writes its own INSERT.)
//!
//! Every statement names its objects with their schema, operators
//! included, and is run by a round with search_path pinned to
//! `pg_catalog, pg_temp`, as the queue table's owner in a
//! security-restricted operation (see `table`). The states it names are
//! [`RowState`]'s (a test checks).

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::{panic::CaughtError, Oid};
use pgrx::prelude::*;

use super::error::WorkerError;
use super::outcome::Outcome;
use super::state::RowState;
use super::transaction::{self, in_subtransaction, panic_message};

/// Rows a previous worker left `sending` (it stopped, was killed, or the
/// server crashed, while they were in flight): sent again while they have
/// attempts left, else failed, since each may have been delivered. Also
/// fails `queued` rows with no attempts left (0.2.0 could leave them).
const RECOVER: &str = "UPDATE lambda_fdw.invocations SET \
       state = CASE WHEN attempts OPERATOR(pg_catalog.<) max_attempts \
                    THEN 'queued' ELSE 'failed' END, \
       error = pg_catalog.format( \
         CASE WHEN state OPERATOR(pg_catalog.=) 'sending' \
           THEN 'the queue worker stopped while attempt %s of %s was in flight; the invocation may have been delivered, and it is %s' \
           ELSE '%s attempts of %s were made already; the invocation may have been delivered, and it is %s' END, \
         attempts, max_attempts, \
         CASE WHEN attempts OPERATOR(pg_catalog.<) max_attempts \
              THEN 'sent again' ELSE 'not sent again' END), \
       finished_at = CASE WHEN attempts OPERATOR(pg_catalog.<) max_attempts \
                          THEN NULL ELSE pg_catalog.clock_timestamp() END \
     WHERE state OPERATOR(pg_catalog.=) 'sending' \
        OR (state OPERATOR(pg_catalog.=) 'queued' \
            AND attempts OPERATOR(pg_catalog.>=) max_attempts) \
     RETURNING id, state";

/// Rows claimed and never started (the worker stopped first): queued again
/// with the attempt their claim counted given back, as no request left.
const UNSTARTED: &str = "UPDATE lambda_fdw.invocations SET state = 'queued', \
       attempts = attempts OPERATOR(pg_catalog.-) 1 \
     WHERE id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[]) \
       AND state OPERATOR(pg_catalog.=) 'sending'";

/// Claims due rows with attempts left, counting the attempt: committed
/// before any of them is sent. `{foreign_table}` is the column, or NULL
/// for a table whose SQL predates it (0.2.0, before ALTER EXTENSION UPDATE).
/// Each row also gives the transaction that wrote the version claimed
/// (`xmin`, column 14), which [`claim`] waits for. `{ordered}` is
/// [`ORDERED`] for a table with ordering keys (0.6.0), else nothing.
const CLAIM: &str = "WITH due AS ( \
       SELECT id, xmin AS written_by FROM lambda_fdw.invocations \
        WHERE state OPERATOR(pg_catalog.=) 'queued' \
          AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() \
          AND attempts OPERATOR(pg_catalog.<) max_attempts {ordered} \
        ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
     UPDATE lambda_fdw.invocations AS i \
        SET state = 'sending', attempts = i.attempts OPERATOR(pg_catalog.+) 1 \
       FROM due WHERE i.id OPERATOR(pg_catalog.=) due.id \
     RETURNING i.id, i.queued_by::pg_catalog.oid, i.function_name, i.region, i.qualifier, \
               i.invocation_type, i.payload::pg_catalog.text, i.context::pg_catalog.text, \
               i.server, i.user_mapping, i.attempts, i.max_attempts, {foreign_table}, \
               due.written_by::pg_catalog.text::pg_catalog.int8";

/// An invocation with an ordering key waits while one queued before it
/// with the same key is still `queued` (maybe for a retry, or not yet
/// due) or `sending`: one at a time per key, in id order. enqueue makes id
/// order the commit order for one key (see `enqueue`).
const ORDERED: &str = "AND (ordering_key IS NULL OR NOT EXISTS ( \
         SELECT FROM lambda_fdw.invocations AS before \
          WHERE before.ordering_key OPERATOR(pg_catalog.=) invocations.ordering_key \
            AND before.id OPERATOR(pg_catalog.<) invocations.id \
            AND before.state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'sending']::pg_catalog.text[])))";

/// Writes outcomes back, to rows still `sending` only: a row recorded once
/// is never recorded (or sent) again.
const RECORD: &str = "UPDATE lambda_fdw.invocations AS i SET \
       state = o.state, status_code = o.status_code, response = o.response::pg_catalog.jsonb, \
       executed_version = o.executed_version, function_error = o.function_error, \
       error = o.error, request_id = o.request_id, \
       next_attempt_at = CASE WHEN o.state OPERATOR(pg_catalog.=) 'queued' \
         THEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) \
              (o.retry_in_ms OPERATOR(pg_catalog.*) '1 millisecond'::pg_catalog.interval) \
         ELSE i.next_attempt_at END, \
       finished_at = CASE WHEN o.state OPERATOR(pg_catalog.=) 'queued' \
         THEN NULL ELSE pg_catalog.clock_timestamp() END \
     FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), \
            pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.int4[]), \
            pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]), \
            pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.text[]), \
            pg_catalog.unnest($8::pg_catalog.text[]), pg_catalog.unnest($9::pg_catalog.float8[])) \
          AS o(id, state, status_code, response, executed_version, function_error, error, \
               request_id, retry_in_ms) \
     WHERE i.id OPERATOR(pg_catalog.=) o.id AND i.state OPERATOR(pg_catalog.=) 'sending'";

const NEXT_DUE: &str = "SELECT EXTRACT(epoch FROM (pg_catalog.min(next_attempt_at) \
       OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()))::pg_catalog.float8 \
     FROM lambda_fdw.invocations \
     WHERE state OPERATOR(pg_catalog.=) 'queued' \
       AND attempts OPERATOR(pg_catalog.<) max_attempts {ordered}";

const PURGE: &str = "DELETE FROM lambda_fdw.invocations \
     WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed', 'cancelled']::pg_catalog.text[]) \
       AND finished_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() \
           OPERATOR(pg_catalog.-) ($1 OPERATOR(pg_catalog.*) '1 second'::pg_catalog.interval))";

/// Runs [`RECOVER`]; returns how many rows it queued again, and the ids of
/// those it failed (finished: their callbacks are due).
pub(crate) fn recover() -> Result<(usize, Vec<i64>), WorkerError> {
    let rows = Spi::connect_mut(|client| {
        client
            .update(RECOVER, None, &[])?
            .map(|row| {
                Ok((
                    row.get::<i64>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?,
                ))
            })
            .collect::<Result<Vec<_>, WorkerError>>()
    })?;
    let requeued = rows
        .iter()
        .filter(|(_, s)| s.as_deref().and_then(RowState::parse) == Some(RowState::Queued))
        .count();
    let failed = rows
        .iter()
        .filter(|(_, s)| s.as_deref().and_then(RowState::parse) != Some(RowState::Queued))
        .map(|(id, _)| *id)
        .collect();
    Ok((requeued, failed))
}

/// Runs [`UNSTARTED`] for rows `ids`.
pub(crate) fn put_back(ids: &[i64]) -> Result<(), WorkerError> {
    Ok(Spi::run_with_args(UNSTARTED, &[ids.to_vec().into()])?)
}

/// Runs [`PURGE`]: deletes rows finished more than `retention_s` seconds ago.
pub(crate) fn purge(retention_s: f64) -> Result<(), WorkerError> {
    Ok(Spi::run_with_args(PURGE, &[retention_s.into()])?)
}

/// Seconds until the next queued row with attempts left is due (negative
/// if one is overdue), `None` if there is none; `ordered`: rows waiting
/// behind an earlier one of their ordering key are not counted.
pub(crate) fn next_due(ordered: bool) -> Result<Option<f64>, WorkerError> {
    let sql = NEXT_DUE.replace("{ordered}", if ordered { ORDERED } else { "" });
    Ok(Spi::get_one::<f64>(&sql)?)
}

/// A row claimed for sending.
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) queued_by: Oid,
    pub(crate) function_name: String,
    pub(crate) region: String,
    pub(crate) qualifier: Option<String>,
    pub(crate) invocation_type: String,
    pub(crate) payload: String,
    pub(crate) context: Option<String>,
    pub(crate) server: Option<Oid>,
    pub(crate) user_mapping: Option<Oid>,
    pub(crate) attempts: i32,
    pub(crate) max_attempts: i32,
    pub(crate) foreign_table: Option<Oid>,
}

/// A claimed row, or (its id and) why it could not even be read.
pub(crate) type ClaimedRow = Result<Claimed, (i64, WorkerError)>;

/// Runs [`CLAIM`] for up to `limit` rows, in id order; `foreign_table_column`:
/// the table has it; `ordered`: it has ordering keys. Before returning, it waits until the transactions that
/// queued the rows have finished committing (see
/// [`transaction::after_writers`]), so the checks made on the rows next see
/// every catalog change those transactions made.
pub(crate) fn claim(
    limit: usize,
    foreign_table_column: bool,
    ordered: bool,
) -> Result<Vec<ClaimedRow>, WorkerError> {
    let sql = CLAIM
        .replace(
            "{foreign_table}",
            if foreign_table_column {
                "i.foreign_table"
            } else {
                "NULL::pg_catalog.oid"
            },
        )
        .replace("{ordered}", if ordered { ORDERED } else { "" });
    let (out, writers) = Spi::connect_mut(|client| -> Result<_, WorkerError> {
        let rows = client.update(&sql, None, &[(limit as i64).into()])?;
        let mut out = Vec::new();
        let mut writers = Vec::new();
        for row in rows {
            let id = row.get::<i64>(1)?.unwrap_or_default();
            // An xid is 32 bits: its text always fits.
            if let Some(xid) = row.get::<i64>(14)?.and_then(|x| u32::try_from(x).ok()) {
                writers.push(xid);
            }
            // A value Rust cannot take (text that is not UTF-8 in a database
            // of another encoding panics in pgrx) fails this row only.
            let read =
                std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<Claimed, WorkerError> {
                    let text = |n: usize| row.get::<String>(n);
                    let oid = |n: usize| row.get::<Oid>(n);
                    Ok(Claimed {
                        id,
                        queued_by: oid(2)?.unwrap_or(Oid::INVALID),
                        function_name: text(3)?.unwrap_or_default(),
                        region: text(4)?.unwrap_or_default(),
                        qualifier: text(5)?,
                        invocation_type: text(6)?.unwrap_or_default(),
                        payload: text(7)?.unwrap_or_default(),
                        context: text(8)?,
                        server: oid(9)?,
                        user_mapping: oid(10)?,
                        attempts: row.get::<i32>(11)?.unwrap_or(1),
                        max_attempts: row.get::<i32>(12)?.unwrap_or(1),
                        foreign_table: oid(13)?,
                    })
                }));
            out.push(match read {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err((id, WorkerError::Unreadable(Box::new(e)))),
                // A PostgreSQL ERROR is not the row's: it leaves its error
                // data on PostgreSQL's stack, which only the round's
                // (sub)transaction abort clears.
                Err(panic) if panic.downcast_ref::<CaughtError>().is_some() => {
                    std::panic::resume_unwind(panic)
                }
                Err(panic) => Err((
                    id,
                    WorkerError::Unreadable(Box::new(WorkerError::Panic(panic_message(&*panic)))),
                )),
            });
        }
        out.sort_by_key(|c| match c {
            Ok(c) => c.id,
            Err((id, _)) => *id,
        });
        Ok((out, writers))
    })?;
    transaction::after_writers(writers);
    Ok(out)
}

/// One RECORD statement for `outcomes`.
fn record_batch(outcomes: &[&Outcome]) -> Result<(), WorkerError> {
    let ids: Vec<i64> = outcomes.iter().map(|o| o.id).collect();
    let states: Vec<String> = outcomes
        .iter()
        .map(|o| o.state.as_str().to_string())
        .collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.status_code).collect();
    let text = |f: fn(&Outcome) -> &Option<String>| -> Vec<Option<String>> {
        outcomes.iter().map(|o| f(o).clone()).collect()
    };
    let waits: Vec<Option<f64>> = outcomes.iter().map(|o| o.retry_in_ms).collect();
    Ok(Spi::run_with_args(
        RECORD,
        &[
            ids.into(),
            states.into(),
            codes.into(),
            text(|o| &o.response).into(),
            text(|o| &o.executed_version).into(),
            text(|o| &o.function_error).into(),
            text(|o| &o.error).into(),
            text(|o| &o.request_id).into(),
            waits.into(),
        ],
    )?)
}

/// Writes `outcomes` back: in one statement; if that fails (an answer that
/// jsonb refuses, say), each in a subtransaction of its own, and one that
/// still cannot be stored is failed with why, without its response (and,
/// if even that fails, with nothing but the error). No outcome can keep the
/// others from being recorded, or fail the round.
pub(crate) fn record(outcomes: &[Outcome]) {
    if outcomes.is_empty() {
        return;
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    if matches!(in_subtransaction(|| record_batch(&all)), Ok(Ok(()))) {
        return;
    }
    for o in outcomes {
        let why = match in_subtransaction(|| record_batch(&[o])) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) | Err(e) => e,
        };
        let failed = o.unstorable(&why);
        let why = match in_subtransaction(|| record_batch(&[&failed])) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) | Err(e) => e,
        };
        let bare = Outcome::failed(o.id, failed.error.clone().unwrap_or_default());
        if let Ok(Ok(())) = in_subtransaction(|| record_batch(&[&bare])) {
            continue;
        }
        log!(
            "lambda_fdw queue worker: could not record the outcome of invocation {}: {why}; it stays 'sending' until the worker restarts",
            o.id
        );
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// The statements name no state that is not a [`RowState`]: every
    /// quoted word of lowercase letters in them is one.
    #[test]
    fn the_statements_name_row_states_only() {
        let mut named = std::collections::BTreeSet::new();
        for sql in [RECOVER, UNSTARTED, CLAIM, ORDERED, RECORD, NEXT_DUE, PURGE] {
            for quoted in sql.split('\'').skip(1).step_by(2) {
                if !quoted.is_empty() && quoted.chars().all(|c| c.is_ascii_lowercase()) {
                    assert!(RowState::parse(quoted).is_some(), "'{quoted}' in {sql}");
                    named.insert(quoted);
                }
            }
        }
        assert_eq!(named.len(), RowState::ALL.len(), "{named:?}");
    }
}

/// In-database tests (`cargo pgrx test`) of the statements: recording
/// outcomes in subtransactions, recovery and the claim's limits. Each runs
/// in a transaction that is rolled back.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::super::table;
    use super::*;

    /// A row of the extension's queue table in `state`; returns its id.
    fn row(state: RowState, attempts: i32, max_attempts: i32) -> i64 {
        Spi::get_one::<i64>(&format!(
            "INSERT INTO lambda_fdw.invocations (queued_by, function_name, region, invocation_type, \
               payload, max_attempts, state, attempts) \
             VALUES (current_user::regrole, 'echo', 'us-east-1', 'RequestResponse', '{{}}', \
               {max_attempts}, '{}', {attempts}) RETURNING id",
            state.as_str()
        ))
        .unwrap()
        .unwrap()
    }

    type Stored = (
        Option<String>,
        Option<i32>,
        Option<pgrx::JsonB>,
        Option<String>,
    );

    fn stored(id: i64) -> (String, Option<i32>, Option<String>, Option<String>) {
        let (state, code, response, error): Stored = Spi::connect(|c| {
            let t = c
                .select(
                    "SELECT state, status_code, response, error FROM lambda_fdw.invocations WHERE id = $1",
                    None,
                    &[id.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::SpiError>((t.get(1)?, t.get(2)?, t.get(3)?, t.get(4)?))
        })
        .unwrap();
        (
            state.unwrap(),
            code,
            response.map(|j| j.0.to_string()),
            error,
        )
    }

    fn answered(id: i64, response: &str) -> Outcome {
        Outcome {
            status_code: Some(200),
            response: Some(response.into()),
            ..Outcome::new(id, RowState::Succeeded)
        }
    }

    #[pg_test]
    fn an_answer_jsonb_refuses_fails_its_row_only() {
        let ids = [
            row(RowState::Sending, 1, 3),
            row(RowState::Sending, 1, 3),
            row(RowState::Sending, 1, 3),
        ];
        let outcomes = [
            answered(ids[0], r#"{"n": 1}"#),
            answered(ids[1], r#"{"a": "\u0000"}"#),
            answered(ids[2], r#"{"n": 3}"#),
        ];
        let queue = table::queue_table().expect("the extension's queue table");
        table::as_owner_pinned(queue.owner, || record(&outcomes));
        assert_eq!(
            stored(ids[0]),
            (
                "succeeded".into(),
                Some(200),
                Some(r#"{"n":1}"#.into()),
                None
            )
        );
        assert_eq!(
            stored(ids[1]),
            (
                "failed".into(),
                Some(200),
                None,
                Some(
                    "the function's response could not be stored: unsupported Unicode escape \
                     sequence (\\u0000 cannot be converted to text)"
                        .into()
                )
            )
        );
        assert_eq!(
            stored(ids[2]),
            (
                "succeeded".into(),
                Some(200),
                Some(r#"{"n":3}"#.into()),
                None
            )
        );
        // A row recorded once is not recorded again.
        record(&[answered(ids[1], r#"{"n": 2}"#)]);
        assert_eq!(stored(ids[1]).0, "failed");
        // The transaction goes on.
        assert_eq!(Spi::get_one::<i32>("SELECT 1").unwrap(), Some(1));
    }

    #[pg_test]
    fn recovery_requeues_or_fails_and_claim_skips_spent_rows() {
        let left = row(RowState::Sending, 1, 3);
        let spent = row(RowState::Sending, 3, 3);
        let stale = row(RowState::Queued, 4, 3);
        let done = row(RowState::Succeeded, 1, 3);
        assert_eq!(recover().map(|(q, f)| (q, f.len())).unwrap(), (1, 2));
        assert_eq!(
            stored(left),
            (
                "queued".into(),
                None,
                None,
                Some("the queue worker stopped while attempt 1 of 3 was in flight; the invocation may have been delivered, and it is sent again".into())
            )
        );
        assert_eq!(
            stored(spent),
            (
                "failed".into(),
                None,
                None,
                Some("the queue worker stopped while attempt 3 of 3 was in flight; the invocation may have been delivered, and it is not sent again".into())
            )
        );
        assert_eq!(
            stored(stale),
            (
                "failed".into(),
                None,
                None,
                Some("4 attempts of 3 were made already; the invocation may have been delivered, and it is not sent again".into())
            )
        );
        assert_eq!(stored(done).0, "succeeded");
        // A queued row with no attempts left is never claimed.
        let spent_queued = row(RowState::Queued, 2, 2);
        let claimed: Vec<i64> = claim(100, true, true)
            .unwrap()
            .into_iter()
            .map(|c| c.map(|c| c.id).unwrap_or_else(|(id, _)| id))
            .collect();
        assert_eq!(claimed, vec![left]);
        assert_eq!(stored(spent_queued).0, "queued");
    }
}
