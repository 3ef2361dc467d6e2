//! lambda_fdw_core: the invocation core, everything about calling Lambda and
//! nothing about SQL. It has no pgrx dependency, so the compiler keeps
//! PostgreSQL out of it; the extension crate (`lambda_fdw`) is its one user.
//!
//! What it offers:
//! - [`ClientSettings`] and [`client_for`]: an SDK client per region,
//!   endpoint and credential source ([`LambdaClient`]);
//! - [`InvokeRequest`] and [`LambdaClient::invoke`]/`invoke_all`: one call
//!   or a bounded concurrent fan-out, each retried by [`retry`] and bounded
//!   by [`limits`], ending in an [`InvokeOutcome`];
//! - [`parse_function_name`]: Lambda's function name, ARN and qualifier
//!   rules;
//! - [`block_on`] and [`sending_runtime`]: the tokio runtimes, polled so a
//!   caller's [`Interrupts`] can cancel a wait;
//! - [`CallLog`]/[`CallStats`]: what each call cost, for statistics;
//! - [`CoreError`]: every way a call can fail, with its SQLSTATE-free
//!   classification.
//! - [`throttle`]: holds after a 429, shared by every caller of a
//!   function once the extension installs a table in shared memory;
//! - [`batch`]: many rows per invocation: cutting rows into batches, the
//!   request of each batch format and the check of its reply (issue 21; not
//!   used by the extension yet).

pub mod batch;
pub mod client;
pub mod error;
pub mod fanout;
pub mod invoke;
pub mod limits;
pub mod measure;
pub mod name;
pub mod outcome;
pub mod request;
pub mod retry;
pub mod runtime;
pub mod settings;
pub mod throttle;

pub use client::{client_for, LambdaClient};
pub use error::{CoreError, CoreResult};
pub use measure::{CallClass, CallLog, CallStats};
pub use name::{parse_function_name, FunctionRef, ResolvedFunction};
pub use outcome::InvokeOutcome;
pub use request::{InvocationType, InvokeRequest, LogType};
pub use runtime::{block_on, block_on_until, sending_runtime, Interrupts};
pub use settings::{AssumeRole, ClientSettings, CredentialSource};
