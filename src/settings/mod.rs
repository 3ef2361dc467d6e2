//! The settings layer, under every surface: what a call's options are and
//! where its client settings and credentials come from. Nothing here
//! imports a surface (fdw, compat, queue, stats).
//!
//! What it offers:
//! - [`options`]: the options of each catalog (server, user mapping, foreign
//!   table, IMPORT FOREIGN SCHEMA), their parsing, validation and limits;
//! - [`guc`]: every `lambda_fdw.*` and `aws_lambda.*` setting;
//! - [`limits`]: the ranges options and settings accept, written once;
//! - [`client`]: a call's client settings from its server, mapping and the
//!   settings;
//! - [`route`]: which server and identity sign a call, for a region (the RDS
//!   surface and the queue) or a foreign table.

pub(crate) mod client;
pub(crate) mod guc;
pub(crate) mod limits;
pub(crate) mod options;
pub(crate) mod route;
