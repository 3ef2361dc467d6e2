//! lambda_fdw: invoke AWS Lambda functions from PostgreSQL.
//!
//! Layers: `fdw` and `compat` (the RDS-compatible functions) turn SQL into
//! requests; `core` invokes Lambda and knows nothing of SQL; `config` and
//! `guc` resolve settings for both surfaces.

pgrx::pg_module_magic!();

pub mod catalog;
pub mod compat;
pub mod config;
pub mod convert;
pub mod core;
pub mod error;
pub mod fdw;
pub mod guc;
pub mod queue;
pub mod route;
pub mod stats;

pgrx::extension_sql_file!(
    "../sql/lambda_fdw.sql",
    name = "lambda_fdw_objects",
    finalize
);
pgrx::extension_sql_file!("../sql/aws_lambda.sql", name = "aws_lambda_api");
pgrx::extension_sql_file!("../sql/queue.sql", name = "queue");
pgrx::extension_sql_file!("../sql/stats.sql", name = "stats", requires = ["queue"]);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a flag PostgreSQL sets while it loads shared_preload_libraries.
    let preloading = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    guc::register(preloading);
    if preloading {
        queue::wake::init_preloaded();
        stats::init_preloaded();
        queue::worker::register_launcher();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
