//! The plan's private data: what GetForeignPlan leaves in a ForeignScan for
//! the executor and EXPLAIN, declared once, beside its one writer
//! ([`encode`]) and its one reader ([`decode`]), as postgres_fdw declares
//! its `FdwScanPrivateIndex`.
//!
//! A lambda_fdw ForeignScan carries:
//!
//! - `fdw_exprs`: one expression per request condition, in the order of
//!   [`Descriptor::conditions`]: the side of the condition that is not the
//!   column (`planner` writes them; `executor` evaluates them, `explain`
//!   deparses them).
//! - `fdw_private`: a List whose elements are at the positions of
//!   [`Private`]:
//!   - [`Private::Descriptor`]: a text Const,
//!     `lambda_fdw:<conditions>;<columns>`. `<conditions>` is one
//!     `<request column><comparison>` per fdw_expr, comma-separated, the
//!     comparison `=` (`= value`), `~` (`= ANY(array)`) or `&`
//!     (`= ALL(array)`); `<columns>` the attribute numbers the scan fills,
//!     comma-separated, or `*` for all of them; then, after a second `;`,
//!     `f` if the query wants its first rows soon (see
//!     [`Descriptor::fast_start`]), else nothing. E.g.
//!     `lambda_fdw:payload~,qualifier=;1,3;f`. The prefix tells a plan
//!     lambda_fdw made from any other.

use std::ffi::c_void;
use std::ptr;

use pgrx::pg_sys::{self, Datum};
use pgrx::{FromDatum, IntoDatum, PgList};

use super::columns::RequestColumn;
use super::product::Compare;

/// The positions of `fdw_private`'s elements.
#[derive(Clone, Copy)]
enum Private {
    /// The descriptor's text (see the module's header), a text Const.
    Descriptor = 0,
}

/// Marks lambda_fdw's descriptor.
const DESCRIPTOR_PREFIX: &str = "lambda_fdw:";

/// The columns a scan must fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Columns {
    /// Every column (the query uses a whole-row reference).
    All,
    /// These attribute numbers.
    Only(Vec<i16>),
}

impl Columns {
    pub(crate) fn includes(&self, attnum: i16) -> bool {
        match self {
            Columns::All => true,
            Columns::Only(attnums) => attnums.contains(&attnum),
        }
    }
}

/// Which request column and comparison each fdw_expr is for, and which
/// columns the scan fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// One entry per fdw_expr, in order.
    pub conditions: Vec<(RequestColumn, Compare)>,
    pub columns: Columns,
    /// The planner was told that only some of the rows may be read (a
    /// `LIMIT`, a cursor, `EXISTS`: a tuple fraction above 0), so a batched
    /// scan starts one batch and ramps up rather than starting a full
    /// window that may never be read.
    pub fast_start: bool,
}

/// `fdw_private` for a plan with this descriptor, in the planner's memory
/// context.
///
/// # Safety
/// Called while planning (a current memory context PostgreSQL owns).
pub(crate) unsafe fn encode(d: &Descriptor) -> *mut pg_sys::List {
    let text = to_text(d).into_datum();
    // SAFETY: makeConst and lappend allocate in the current memory context;
    // the text datum was made there too.
    unsafe {
        let descriptor = pg_sys::makeConst(
            pg_sys::TEXTOID,
            -1,
            pg_sys::DEFAULT_COLLATION_OID,
            -1,
            text.unwrap_or(Datum::from(0)),
            text.is_none(),
            false,
        );
        let elements = [(Private::Descriptor, descriptor as *mut c_void)];
        let mut private = ptr::null_mut();
        for (at, (position, element)) in elements.into_iter().enumerate() {
            debug_assert_eq!(position as usize, at);
            private = pg_sys::lappend(private, element);
        }
        private
    }
}

/// The descriptor a plan carries, if it is one lambda_fdw made.
///
/// # Safety
/// `plan` is a ForeignScan of a lambda_fdw table (or a copy of one).
pub(crate) unsafe fn decode(plan: *mut pg_sys::ForeignScan) -> Option<Descriptor> {
    // SAFETY: fdw_private is a List of nodes; the element is cast to a Const
    // only after its tag is checked, and read as text only after its type is.
    unsafe {
        let list = PgList::<pg_sys::Node>::from_pg((*plan).fdw_private);
        let element = list.get_ptr(Private::Descriptor as usize)?;
        if !pgrx::is_a(element, pg_sys::NodeTag::T_Const) {
            return None;
        }
        let c = element as *mut pg_sys::Const;
        if (*c).consttype != pg_sys::TEXTOID || (*c).constisnull {
            return None;
        }
        from_text(&String::from_datum((*c).constvalue, false)?)
    }
}

fn compare_code(c: Compare) -> char {
    match c {
        Compare::Eq => '=',
        Compare::Any => '~',
        Compare::All => '&',
    }
}

/// The descriptor's text (see the module's header).
fn to_text(d: &Descriptor) -> String {
    let conditions: Vec<String> = d
        .conditions
        .iter()
        .map(|(col, cmp)| format!("{}{}", col.name(), compare_code(*cmp)))
        .collect();
    let columns = match &d.columns {
        Columns::All => "*".to_string(),
        Columns::Only(attnums) => attnums
            .iter()
            .map(i16::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    let start = if d.fast_start { "f" } else { "" };
    format!(
        "{DESCRIPTOR_PREFIX}{};{columns};{start}",
        conditions.join(",")
    )
}

/// The descriptor of a text [`to_text`] made; `None` for any other text.
fn from_text(text: &str) -> Option<Descriptor> {
    let (conditions, rest) = text.strip_prefix(DESCRIPTOR_PREFIX)?.split_once(';')?;
    let (columns, fast_start) = match rest.split_once(';')? {
        (columns, "f") => (columns, true),
        (columns, "") => (columns, false),
        _ => return None,
    };
    let conditions = if conditions.is_empty() {
        Vec::new()
    } else {
        conditions
            .split(',')
            .map(|entry| {
                let code = entry.chars().last()?;
                let column = RequestColumn::named(&entry[..entry.len() - code.len_utf8()])?;
                let compare = [Compare::Eq, Compare::Any, Compare::All]
                    .into_iter()
                    .find(|c| compare_code(*c) == code)?;
                Some((column, compare))
            })
            .collect::<Option<Vec<_>>>()?
    };
    let columns = match columns {
        "*" => Columns::All,
        "" => Columns::Only(Vec::new()),
        list => Columns::Only(
            list.split(',')
                .map(|n| n.parse().ok().filter(|&n: &i16| n > 0))
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    Some(Descriptor {
        conditions,
        columns,
        fast_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip() {
        let d = Descriptor {
            conditions: vec![
                (RequestColumn::Payload, Compare::Any),
                (RequestColumn::Qualifier, Compare::Eq),
                (RequestColumn::InvocationType, Compare::All),
                (RequestColumn::LogType, Compare::Eq),
                (RequestColumn::Context, Compare::Eq),
            ],
            columns: Columns::Only(vec![1, 7, 10]),
            fast_start: true,
        };
        let text = to_text(&d);
        assert_eq!(
            text,
            "lambda_fdw:payload~,qualifier=,invocation_type&,log_type=,context=;1,7,10;f"
        );
        assert_eq!(from_text(&text), Some(d));
        let none = Descriptor {
            conditions: vec![],
            columns: Columns::Only(vec![]),
            fast_start: false,
        };
        assert_eq!(to_text(&none), "lambda_fdw:;;");
        assert_eq!(from_text("lambda_fdw:;;"), Some(none));
        let all = Descriptor {
            conditions: vec![(RequestColumn::Payload, Compare::Eq)],
            columns: Columns::All,
            fast_start: false,
        };
        assert_eq!(to_text(&all), "lambda_fdw:payload=;*;");
        assert_eq!(from_text("lambda_fdw:payload=;*;"), Some(all));
    }

    #[test]
    fn columns_included() {
        assert!(Columns::All.includes(3));
        assert!(Columns::Only(vec![1, 3]).includes(3));
        assert!(!Columns::Only(vec![1, 3]).includes(2));
        assert!(!Columns::Only(vec![]).includes(1));
    }

    #[test]
    fn foreign_descriptors_are_refused() {
        assert_eq!(from_text("payload=;"), None);
        assert_eq!(from_text("lambda_fdw:payload="), None);
        assert_eq!(from_text("lambda_fdw:status_code=;"), None);
        assert_eq!(from_text("lambda_fdw:payload?;"), None);
        assert_eq!(from_text("lambda_fdw:payload;"), None);
        assert_eq!(from_text("lambda_fdw:payload=;0"), None);
        assert_eq!(from_text("lambda_fdw:payload=;1,x"), None);
        assert_eq!(from_text("lambda_fdw:payload=;1"), None);
        assert_eq!(from_text("lambda_fdw:payload=;1;x"), None);
    }
}
