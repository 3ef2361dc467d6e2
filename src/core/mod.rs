//! The invocation core: everything about calling Lambda, nothing about SQL.

pub mod client;
pub mod error;
pub mod executor;
pub mod fanout;
pub mod invoke;
pub mod limits;
pub mod measure;
pub mod name;
pub mod request;
pub mod retry;
pub mod settings;

pub use client::{client_for, LambdaClient};
pub use error::{CoreError, CoreResult};
pub use executor::{block_on, block_on_until, sending_runtime, Interrupts};
pub use invoke::InvokeOutcome;
pub use measure::{CallClass, CallLog, CallStats};
pub use name::{parse_function_name, FunctionRef, ResolvedFunction};
pub use request::{InvocationType, InvokeRequest, LogType};
pub use settings::{AssumeRole, ClientSettings, CredentialSource};
