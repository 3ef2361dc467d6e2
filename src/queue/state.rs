//! The states a row of `lambda_fdw.invocations` goes through, as the
//! table's CHECK constraint lists them (sql/queue.sql; a test checks that
//! they agree): `queued` (waiting, maybe for a retry), `sending` (claimed,
//! its attempt counted, maybe in flight), then `succeeded` or `failed`.

/// A row's `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RowState {
    /// Waiting to be sent, or sent again.
    Queued,
    /// Claimed by the worker, its attempt counted; its request may have left.
    Sending,
    /// Answered without a function error (finished).
    Succeeded,
    /// Failed for good, with why in `error` (finished).
    Failed,
    /// Cancelled while queued, never sent (finished).
    Cancelled,
}

impl RowState {
    /// Every state, as the CHECK constraint lists them.
    #[cfg(any(test, feature = "pg_test"))]
    pub(crate) const ALL: [RowState; 5] = [
        RowState::Queued,
        RowState::Sending,
        RowState::Succeeded,
        RowState::Failed,
        RowState::Cancelled,
    ];

    /// The state as the `state` column holds it.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            RowState::Queued => "queued",
            RowState::Sending => "sending",
            RowState::Succeeded => "succeeded",
            RowState::Failed => "failed",
            RowState::Cancelled => "cancelled",
        }
    }

    /// The state a `state` column's value names, if any.
    pub(crate) fn parse(s: &str) -> Option<RowState> {
        match s {
            "queued" => Some(RowState::Queued),
            "sending" => Some(RowState::Sending),
            "succeeded" => Some(RowState::Succeeded),
            "failed" => Some(RowState::Failed),
            "cancelled" => Some(RowState::Cancelled),
            _ => None,
        }
    }
}

#[cfg(test)]
mod unit {
    use super::RowState;

    #[test]
    fn each_state_reads_back() {
        for state in RowState::ALL {
            assert_eq!(RowState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RowState::parse("done"), None);
    }
}

/// The states agree with the queue table's CHECK constraint, as the
/// extension's SQL created it.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use std::collections::BTreeSet;

    use pgrx::prelude::*;

    use super::RowState;

    #[pg_test]
    fn the_row_states_are_the_check_constraints() {
        let definition = Spi::get_one::<String>(
            "SELECT pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c \
              WHERE c.conrelid = 'lambda_fdw.invocations'::pg_catalog.regclass AND c.contype = 'c' \
                AND c.conkey = ARRAY[(SELECT a.attnum FROM pg_catalog.pg_attribute a \
                                       WHERE a.attrelid = c.conrelid AND a.attname = 'state')]",
        )
        .unwrap()
        .expect("a CHECK constraint on lambda_fdw.invocations.state");
        // CHECK ((state = ANY (ARRAY['queued'::text, 'sending'::text, ...])))
        let listed: BTreeSet<&str> = definition.split('\'').skip(1).step_by(2).collect();
        let ours: BTreeSet<&str> = RowState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(listed, ours, "{definition}");
    }
}
