//! Batched sends: the claimed rows of a foreign table that batches (its
//! `batch_size` and `batch_format`, read when the rows are sent) travel
//! many to a request. [`jobs`] groups a round's ready rows into requests,
//! inside the round's transaction; [`send`] sends one batch on the sending
//! runtime, and gives each row its own [`Outcome`].
//!
//! The decisions are the core's: rows are cut with [`Cutter`] (at most
//! `batch_size` rows, a body within the invocation type's limit), encoded
//! with [`batch::encode`], a 413 halves the batch ([`batch::send_halving`],
//! each part's request id from [`batch::part_id`]), and each row's outcome
//! comes from the batch's by [`batch::split`], then the queue's
//! per-row [`classify`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use lambda_fdw_core::batch::{self, BatchFormat, BatchMeta, Cut, Cutter};
use lambda_fdw_core::request::{
    context_with_invocation_ids, encode_client_context, invocation_ids_that_fit,
};
use lambda_fdw_core::{
    CallStats, ClientSettings, CoreError, InvocationType, InvokeOutcome, InvokeRequest,
    LambdaClient, ResolvedFunction,
};

use super::error::WorkerError;
use super::outcome::{classify, Outcome, Owner};
use super::signing::{BatchKey, Ready};
use super::state::RowState;

/// What one request of the worker carries: a row alone (as before
/// batching, or a row that cannot be sent), or a batch.
pub(crate) enum Job {
    One(Ready),
    Batch(Batch),
}

impl Job {
    /// Whether a request leaves for it (a row failed before sending does
    /// not).
    fn sends(&self) -> bool {
        match self {
            Job::One(r) => r.prepared.is_ok(),
            Job::Batch(_) => true,
        }
    }

    fn ids(&self) -> Vec<i64> {
        match self {
            Job::One(r) => vec![r.id],
            Job::Batch(b) => b.rows.iter().map(|r| r.id).collect(),
        }
    }
}

/// A row of a batch: its id and its attempt.
pub(crate) struct BatchRow {
    pub(crate) id: i64,
    pub(crate) attempts: i32,
    pub(crate) max_attempts: i32,
}

/// Rows that go in one request (or, if Lambda refuses it as too large, in
/// its halves).
pub(crate) struct Batch {
    /// In id order, which is the request's row order.
    pub(crate) rows: Vec<BatchRow>,
    payloads: Vec<Bytes>,
    format: BatchFormat,
    meta: BatchMeta,
    target: ResolvedFunction,
    invocation_type: InvocationType,
    /// The user's context the rows share, without the ids.
    context: Option<String>,
    pub(crate) settings: ClientSettings,
    pub(crate) owner: Owner,
}

impl Batch {
    /// The function's name (without qualifier), for its limit and holds.
    pub(crate) fn function_name(&self) -> &str {
        &self.target.function_name
    }
}

/// The request id of a batch: `q<first row's id>-<its attempt>` (a part
/// after a 413 adds `.<part>`): unique per request, the same for no two
/// claims.
fn request_id(first: i64, attempt: i32) -> String {
    format!("q{first}-{attempt}")
}

/// A row that cannot be sent, failed with `error`.
fn unsendable(r: Ready, error: WorkerError) -> Job {
    Job::One(Ready {
        prepared: Err(Rc::new(error)),
        batch: None,
        ..r
    })
}

/// Groups a round's ready rows (in id order) into requests: rows of a
/// foreign table that batches with the same [`BatchKey`] go together, in
/// id order, cut by the batch size, the request's byte limit and the
/// client context's room for their ids; every other row goes alone. Of
/// the requests, the first `room` are kept; the others are returned
/// apart, to be put back unsent. `place` gives the metadata's (cluster,
/// database), asked only if a row batches.
pub(crate) fn jobs(
    ready: Vec<Ready>,
    room: usize,
    place: impl FnOnce() -> (String, String),
) -> (Vec<Job>, Vec<Job>) {
    let mut jobs = Vec::new();
    let mut groups: Vec<Vec<Ready>> = Vec::new();
    let mut index: HashMap<BatchKey, usize> = HashMap::new();
    for r in ready {
        let key = match (&r.batch, &r.prepared) {
            (Some(b), Ok(_)) => b.key.clone(),
            _ => {
                jobs.push(Job::One(r));
                continue;
            }
        };
        match index.get(&key) {
            Some(&i) => groups[i].push(r),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![r]);
            }
        }
    }
    if !groups.is_empty() {
        let place = place();
        for group in groups {
            cut_group(group, &place, &mut jobs);
        }
    }
    let mut kept = Vec::with_capacity(jobs.len());
    let mut back = Vec::new();
    let mut sending = 0;
    for job in jobs {
        if !job.sends() {
            kept.push(job);
        } else if sending < room {
            sending += 1;
            kept.push(job);
        } else {
            back.push(job);
        }
    }
    (kept, back)
}

/// The ids of the rows of `jobs`, in order.
pub(crate) fn ids_of(jobs: &[Job]) -> Vec<i64> {
    let mut ids: Vec<i64> = jobs.iter().flat_map(Job::ids).collect();
    ids.sort_unstable();
    ids
}

/// The most rows one request of `ready` may carry: the largest batch size
/// among them, 1 if none batches.
pub(crate) fn widest(ready: &[Ready]) -> usize {
    ready
        .iter()
        .filter_map(|r| r.batch.as_ref().map(|b| b.batching.size))
        .max()
        .unwrap_or(1)
}

/// Cuts the rows of one group (same key, in id order) into batches;
/// `place` is (cluster, database).
fn cut_group(group: Vec<Ready>, place: &(String, String), jobs: &mut Vec<Job>) {
    // What the group's rows share, from its first row (every row of a
    // group batches and has its request).
    let shared = group
        .first()
        .and_then(|first| match (&first.batch, &first.prepared) {
            (Some(b), Ok((request, settings, owner))) => Some((
                b.batching.clone(),
                b.context().map(str::to_owned),
                request.target.clone(),
                request.invocation_type,
                settings.clone(),
                owner.clone(),
            )),
            _ => None,
        });
    let Some((batching, context, target, invocation_type, settings, owner)) = shared else {
        jobs.extend(group.into_iter().map(Job::One));
        return;
    };
    let limit = invocation_type.max_payload_bytes();
    let meta = |request_id: String, query_id: String| BatchMeta {
        request_id,
        database: place.1.clone(),
        user: batching.user.clone(),
        function: batching.table.clone(),
        query_id,
        cluster: place.0.clone(),
    };
    // The longest metadata the batches can carry (a part's id included).
    let longest = meta(
        format!("{}.{}", request_id(i64::MAX, i32::MAX), u32::MAX),
        i64::MAX.to_string(),
    );
    let cutter = Cutter::new(batching.format, &longest, batching.size, limit);
    let ids: Vec<i64> = group.iter().map(|r| r.id).collect();
    let payloads: Vec<Bytes> = group
        .iter()
        .map(|r| match &r.prepared {
            Ok((request, ..)) => request.payload.clone(),
            Err(_) => Bytes::new(),
        })
        .collect();
    let texts: Vec<Cow<'_, str>> = payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p))
        .collect();
    let mut rows: Vec<Option<Ready>> = group.into_iter().map(Some).collect();
    let mut take = |i: usize| rows[i].take();
    let end = ids.len();
    let mut start = 0;
    while start < end {
        let window = &ids[start..end.min(start + batching.size)];
        let fit = match invocation_ids_that_fit(context.as_deref(), window) {
            Ok(fit) => fit,
            Err(e) => {
                // Not expected: each row's own context was checked.
                let e = Rc::new(WorkerError::from(e));
                for i in start..end {
                    if let Some(r) = take(i) {
                        jobs.push(Job::One(Ready {
                            prepared: Err(e.clone()),
                            batch: None,
                            ..r
                        }));
                    }
                }
                return;
            }
        };
        if fit == 0 {
            // Not even this row's id fits beside the user's context.
            let error = context_with_invocation_ids(context.as_deref(), &ids[start..=start])
                .and_then(|c| encode_client_context(&c))
                .err()
                .unwrap_or(CoreError::ContextTooLarge {
                    size: 0,
                    limit: lambda_fdw_core::request::MAX_CLIENT_CONTEXT_BYTES,
                });
            if let Some(r) = take(start) {
                jobs.push(unsendable(r, error.into()));
            }
            start += 1;
            continue;
        }
        match cutter.next(start, start + fit, |i| texts[i].as_ref()) {
            Cut::TooLarge { row, bytes } => {
                if let Some(r) = take(row) {
                    jobs.push(unsendable(
                        r,
                        WorkerError::BatchRowTooLarge {
                            bytes,
                            limit,
                            invocation_type: invocation_type.as_str(),
                        },
                    ));
                }
                start = row + 1;
            }
            Cut::Rows(range) => {
                let taken: Vec<Ready> = range.clone().filter_map(&mut take).collect();
                let Some(head) = taken.first() else {
                    start = range.end.max(start + 1);
                    continue;
                };
                let batch_meta = meta(request_id(head.id, head.attempts), head.id.to_string());
                jobs.push(Job::Batch(Batch {
                    rows: taken
                        .iter()
                        .map(|r| BatchRow {
                            id: r.id,
                            attempts: r.attempts,
                            max_attempts: r.max_attempts,
                        })
                        .collect(),
                    payloads: range.clone().map(|i| payloads[i].clone()).collect(),
                    format: batching.format,
                    meta: batch_meta,
                    target: target.clone(),
                    invocation_type,
                    context: context.clone(),
                    settings: settings.clone(),
                    owner: owner.clone(),
                }));
                start = range.end.max(start + 1);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one request of a batch got: its rows (positions in the batch),
/// each row's result, and the call's statistics (none if the request
/// could not even be made).
type Part = (
    Range<usize>,
    Result<Vec<InvokeOutcome>, (CoreError, Option<Duration>)>,
    Option<CallStats>,
);

/// Sends `batch` with `client` (a 413 halves it, each half sent again,
/// until a refused part is one row, which fails alone), and gives each row
/// its outcome: each row's result through [`batch::split`] and
/// [`classify`], a failed request's error to each of its rows (retried as
/// each row's attempts allow, all with the same wait, so that they come
/// due together). The first row's outcome carries the batch's statistics,
/// one call per request.
pub(crate) async fn send(batch: Batch, client: &LambdaClient) -> Vec<Outcome> {
    let display = batch.target.display.clone();
    let ids: Vec<i64> = batch.rows.iter().map(|r| r.id).collect();
    let texts: Vec<Cow<'_, str>> = batch
        .payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p))
        .collect();
    let parts: Mutex<Vec<Part>> = Mutex::new(Vec::new());
    // Requests refused as too large and sent again as halves: calls too.
    let halved: Mutex<Vec<CallStats>> = Mutex::new(Vec::new());
    let (format, meta) = (batch.format, &batch.meta);
    let (target, invocation_type, context) = (
        &batch.target,
        batch.invocation_type,
        batch.context.as_deref(),
    );
    let (parts_ref, halved_ref, ids_ref, texts_ref, display_ref) =
        (&parts, &halved, &ids, &texts, &display);
    let send_part = move |range: Range<usize>, part: usize| {
        let meta = BatchMeta {
            request_id: batch::part_id(&meta.request_id, part),
            ..meta.clone()
        };
        let body = batch::encode(format, &meta, &texts_ref[range.clone()]);
        let request = InvokeRequest::queued_batch(
            target.clone(),
            invocation_type,
            context,
            &ids_ref[range.clone()],
            body,
        );
        async move {
            let rows = range.len() as u64;
            let request = match request {
                Ok(r) => r,
                Err(e) => {
                    // Nothing was sent: not a call.
                    lock(parts_ref).push((range, Err((e, None)), None));
                    return Ok(Vec::new());
                }
            };
            let started = Instant::now();
            let result = client.send_once(&request).await;
            let stats = CallStats::of(
                result.as_ref().map_err(|(e, _)| e),
                display_ref.clone(),
                1,
                started.elapsed(),
                request.payload.len() as u64,
            )
            .with_rows(rows);
            match result {
                Err((e, retry_after)) if range.len() > 1 && batch::too_large(&e) => {
                    lock(halved_ref).push(CallStats {
                        retries: 0,
                        ..stats
                    });
                    Err((e, retry_after))
                }
                other => {
                    let rows = range.len();
                    let other = other.map(|o| batch::split(format, o, rows));
                    lock(parts_ref).push((range, other, Some(stats)));
                    Ok(Vec::new())
                }
            }
        }
    };
    // Every part's result is kept in `parts`; only a too-large batch of
    // more than one row is an error, and that is halved.
    let _ = batch::send_halving(
        0..ids.len(),
        send_part,
        |(e, _): &(CoreError, Option<Duration>)| batch::too_large(e),
    )
    .await;
    let parts = parts.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut calls = halved.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut outcomes: Vec<Option<Outcome>> = (0..ids.len()).map(|_| None).collect();
    for (range, result, stats) in parts {
        let row = |i: usize| &batch.rows[i];
        let mut retried = false;
        match result {
            Ok(results) => {
                for (i, result) in range.clone().zip(results) {
                    let r = row(i);
                    let o = classify(r.id, r.attempts, r.max_attempts, &display, Ok(result));
                    retried |= o.state == RowState::Queued;
                    outcomes[i] = Some(o);
                }
            }
            Err((error, retry_after)) => {
                for i in range.clone() {
                    let r = row(i);
                    let o = classify(
                        r.id,
                        r.attempts,
                        r.max_attempts,
                        &display,
                        Err((error.clone(), retry_after)),
                    );
                    retried |= o.state == RowState::Queued;
                    outcomes[i] = Some(o);
                }
            }
        }
        // Each attempt is one send; earlier ones were counted as retries.
        calls.extend(stats.map(|stats| {
            if retried {
                stats.to_be_retried()
            } else {
                CallStats {
                    retries: 0,
                    ..stats
                }
            }
        }));
    }
    let mut outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .zip(&ids)
        .map(|(o, id)| {
            o.unwrap_or_else(|| Outcome::failed(*id, WorkerError::NoOutcome.to_string()))
        })
        .collect();
    // The rows to be sent again wait alike, so that they come due together.
    let wait = outcomes
        .iter()
        .filter(|o| o.state == RowState::Queued)
        .filter_map(|o| o.retry_in_ms)
        .fold(None, |most: Option<f64>, w| {
            Some(most.map_or(w, |m| m.max(w)))
        });
    if let Some(wait) = wait {
        for o in outcomes.iter_mut().filter(|o| o.state == RowState::Queued) {
            o.retry_in_ms = Some(wait);
        }
    }
    if let Some(first) = outcomes.first_mut() {
        first.measured = Some((batch.owner.clone(), calls));
    }
    outcomes
}

#[cfg(test)]
mod unit {
    use pgrx::pg_sys::Oid;

    use super::super::signing::{Batchable, Batching};
    use super::*;
    use lambda_fdw_core::parse_function_name;

    /// Row `id` of table `table` (its batch size `size`, or not batching
    /// with 0), with `context`, `payload` and `invocation_type`.
    fn row(
        id: i64,
        table: u32,
        size: usize,
        context: Option<&str>,
        payload: &str,
        invocation_type: InvocationType,
    ) -> Ready {
        let target = parse_function_name("f")
            .and_then(|f| f.resolve(Some("us-east-1"), None, None))
            .expect("a function");
        let request = InvokeRequest::queued(
            target,
            invocation_type,
            context,
            id,
            Bytes::from(payload.to_owned()),
        )
        .expect("a request");
        let owner = Owner {
            role: Oid::from(10),
            server: Some((Oid::from(20), "s".into())),
        };
        let batch = (size > 0).then(|| Batchable {
            batching: Rc::new(Batching {
                size,
                format: BatchFormat::Redshift,
                table: format!("public.t{table}"),
                user: "alice".into(),
            }),
            key: (
                Some(Oid::from(table)),
                Oid::from(10),
                Some(Oid::from(20)),
                None,
                "us-east-1".into(),
                "f".into(),
                None,
                invocation_type.as_str().into(),
                context.map(str::to_owned),
            ),
        });
        Ready {
            id,
            attempts: 1,
            max_attempts: 3,
            prepared: Ok((request, ClientSettings::new("us-east-1"), owner)),
            batch,
        }
    }

    fn place() -> (String, String) {
        ("db1".into(), "app".into())
    }

    /// Each job as its rows' ids; a row failed before sending as its
    /// negated id.
    fn shape(jobs: &[Job]) -> Vec<Vec<i64>> {
        jobs.iter()
            .map(|j| match j {
                Job::One(r) if r.prepared.is_err() => vec![-r.id],
                other => other.ids(),
            })
            .collect()
    }

    #[test]
    fn rows_of_one_key_go_together_in_id_order_cut_at_the_batch_size() {
        let rr = InvocationType::RequestResponse;
        let ready = vec![
            row(1, 100, 2, None, "1", rr),
            row(2, 200, 2, None, "2", rr),
            row(3, 100, 2, None, "3", rr),
            row(4, 100, 2, None, "4", rr),
            row(5, 200, 2, None, "5", rr),
            row(6, 100, 2, Some(r#"{"env":{}}"#), "6", rr),
            row(7, 100, 2, None, "7", rr),
            row(8, 0, 0, None, "8", rr),
            row(9, 100, 2, None, "9", InvocationType::Event),
        ];
        let (jobs, beyond) = jobs(ready, 100, place);
        assert!(beyond.is_empty());
        assert_eq!(
            shape(&jobs),
            vec![
                vec![8],
                vec![1, 3],
                vec![4, 7],
                vec![2, 5],
                vec![6],
                vec![9]
            ]
        );
        let Job::Batch(b) = &jobs[1] else {
            panic!("a batch")
        };
        assert_eq!(
            (
                b.meta.request_id.as_str(),
                b.meta.query_id.as_str(),
                b.meta.function.as_str(),
                b.meta.user.as_str(),
                b.meta.cluster.as_str(),
                b.meta.database.as_str()
            ),
            ("q1-1", "1", "public.t100", "alice", "db1", "app")
        );
    }

    #[test]
    fn requests_beyond_the_room_are_given_back_and_failed_rows_take_none() {
        let rr = InvocationType::RequestResponse;
        let mut ready: Vec<Ready> = (1..=7).map(|i| row(i, 100, 2, None, "1", rr)).collect();
        ready[2].prepared = Err(Rc::new(WorkerError::Panic("unsigned".into())));
        let (kept, beyond) = jobs(ready, 2, place);
        assert_eq!(shape(&kept), vec![vec![-3], vec![1, 2], vec![4, 5]]);
        assert_eq!(ids_of(&beyond), vec![6, 7]);
    }

    #[test]
    fn a_row_too_large_alone_fails_alone_and_bodies_stay_within_the_limit() {
        let event = InvocationType::Event;
        let half = format!("\"{}\"", "x".repeat(600 * 1024));
        let big = format!("\"{}\"", "y".repeat(1024 * 1024 - 10));
        let ready = vec![
            row(1, 100, 10, None, &half, event),
            row(2, 100, 10, None, &half, event),
            row(3, 100, 10, None, &big, event),
            row(4, 100, 10, None, "4", event),
        ];
        let (jobs, _) = jobs(ready, 100, place);
        assert_eq!(shape(&jobs), vec![vec![1], vec![2], vec![-3], vec![4]]);
        let Job::One(r) = &jobs[2] else {
            panic!("a failed row")
        };
        let error = r.prepared.as_ref().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "this invocation's batch request is 1048796 bytes with the row alone, more than \
                 the 1048576 bytes Lambda accepts for Event invocations; it is not sent"
            )
        );
    }

    #[test]
    fn a_batch_ends_where_the_next_id_would_not_fit_the_context() {
        let rr = InvocationType::RequestResponse;
        // 2,685 bytes of JSON at most: 2,600 of the caller's leave room for
        // a few ids only.
        let context = format!(r#"{{"custom":{{"app":"{}"}}}}"#, "a".repeat(2549));
        let first = 1_000_000_i64;
        let ready: Vec<Ready> = (first..first + 20)
            .map(|i| row(i, 100, 100, Some(&context), "1", rr))
            .collect();
        let (jobs, _) = jobs(ready, 100, place);
        let sizes: Vec<usize> = shape(&jobs).iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.len() > 1 && sizes[0] > 1, "{sizes:?}");
        for job in &jobs {
            let ids = job.ids();
            let with_ids = context_with_invocation_ids(Some(&context), &ids).expect("context");
            assert!(encode_client_context(&with_ids).is_ok(), "{ids:?}");
            let mut one_more = ids.clone();
            one_more.push(first + 20);
            if ids.len() == sizes[0] {
                let over = context_with_invocation_ids(Some(&context), &one_more).expect("context");
                assert!(encode_client_context(&over).is_err(), "{one_more:?}");
            }
        }
    }
}
