//! JSON text from Lambda to PostgreSQL json and jsonb datums, without an
//! intermediate tree: a payload costs one copy into PostgreSQL memory (json),
//! or one copy and PostgreSQL's own parse (jsonb).

use std::ffi::c_char;

use bytes::Bytes;
use pgrx::pg_sys::{self, Datum};

use crate::error::LambdaFdwError;

// The C function itself (pgrx's binding is a guarded Rust wrapper), to be
// called by PostgreSQL's DirectFunctionCall1Coll.
unsafe extern "C-unwind" {
    fn jsonb_in(fcinfo: pg_sys::FunctionCallInfo) -> Datum;
    fn jsonb_out(fcinfo: pg_sys::FunctionCallInfo) -> Datum;
}

/// The JSON text of a jsonb datum, as PostgreSQL writes it.
///
/// # Safety
/// `datum` must be a (possibly toasted) jsonb value.
pub(crate) unsafe fn jsonb_text(datum: Datum) -> String {
    // SAFETY: jsonb_out detoasts its argument and returns a palloc'd C string,
    // copied into Rust memory and freed here.
    unsafe {
        let cstr = pg_sys::DirectFunctionCall1Coll(Some(jsonb_out), pg_sys::InvalidOid, datum)
            .cast_mut_ptr::<c_char>();
        let text = std::ffi::CStr::from_ptr(cstr)
            .to_string_lossy()
            .into_owned();
        pg_sys::pfree(cstr.cast());
        text
    }
}

/// Largest text PostgreSQL stores in one value.
const MAX_VARLENA: usize = (1 << 30) - 1 - pg_sys::VARHDRSZ;

/// Checks that `bytes` is one JSON value, building nothing.
pub(crate) fn validate_json(bytes: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn check_size(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() > MAX_VARLENA {
        Err(format!(
            "it is {} bytes, more than the {MAX_VARLENA} bytes a PostgreSQL value can hold",
            bytes.len()
        ))
    } else {
        Ok(())
    }
}

/// A json datum with exactly this text (checked to be JSON).
pub(crate) fn json_datum(bytes: Bytes) -> Result<Datum, String> {
    validate_json(&bytes)?;
    check_size(&bytes)?;
    // SAFETY: cstring_to_text_with_len copies `len` bytes from a valid buffer
    // into a new palloc'd text; json has text's representation.
    let text = unsafe {
        pg_sys::cstring_to_text_with_len(bytes.as_ptr() as *const c_char, bytes.len() as i32)
    };
    Ok(Datum::from(text))
}

/// The datum of a function's response, as a json (the text as returned) or
/// jsonb value; `None` when there was no response.
pub(crate) fn response_datum(
    payload: Option<Bytes>,
    function: &str,
    jsonb: bool,
) -> crate::error::Result<Option<Datum>> {
    let Some(bytes) = payload else {
        return Ok(None);
    };
    let datum = if jsonb {
        jsonb_datum(bytes)
    } else {
        json_datum(bytes)
    };
    datum
        .map(Some)
        .map_err(|reason| LambdaFdwError::ResponseNotJson {
            function: function.to_string(),
            reason,
        })
}

/// A jsonb datum parsed by PostgreSQL from this text (checked to be JSON).
pub(crate) fn jsonb_datum(bytes: Bytes) -> Result<Datum, String> {
    validate_json(&bytes)?;
    check_size(&bytes)?;
    let text = palloc_cstring(&bytes);
    // The Rust copy goes before parsing: a large response is then held twice
    // at most, not three times.
    drop(bytes);
    Ok(parse_jsonb(text))
}

/// A jsonb datum parsed by PostgreSQL from JSON text that serde_json wrote
/// (so known to be JSON), in the current memory context.
pub(crate) fn jsonb_from_text(text: &[u8]) -> Datum {
    parse_jsonb(palloc_cstring(text))
}

/// A palloc'd, NUL-terminated copy of `bytes`.
fn palloc_cstring(bytes: &[u8]) -> *mut c_char {
    let len = bytes.len();
    // SAFETY: a palloc'd buffer of len + 1 bytes receives the bytes and a NUL.
    unsafe {
        let buf = pg_sys::palloc(len + 1) as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, len);
        *buf.add(len) = 0;
        buf.cast()
    }
}

/// Parses and frees a C string from [`palloc_cstring`].
fn parse_jsonb(text: *mut c_char) -> Datum {
    // SAFETY: `text` is a palloc'd C string, as jsonb_in expects; it is freed
    // after parsing. jsonb_in reports its own errors through PostgreSQL
    // (pgrx turns them into a Rust panic here, unwinding safely).
    unsafe {
        let datum =
            pg_sys::DirectFunctionCall1Coll(Some(jsonb_in), pg_sys::InvalidOid, Datum::from(text));
        pg_sys::pfree(text.cast());
        datum
    }
}
