//! lambda_fdw: invoke AWS Lambda functions from PostgreSQL.
//!
//! Layers, imports pointing down only:
//! - the surfaces: `fdw` (foreign tables), `compat` (the RDS
//!   `aws_lambda.invoke` API), `queue` (the after-commit queue and its
//!   worker) and `stats` (invocation statistics);
//! - `settings`: options per catalog, the GUCs, a call's client settings
//!   and routing;
//! - `pg` (PostgreSQL glue) and `error`;
//! - the `lambda_fdw_core` crate, which invokes Lambda and has no pgrx.

pgrx::pg_module_magic!();

mod compat;
mod error;
mod fdw;
mod pg;
mod queue;
mod settings;
mod stats;

pgrx::extension_sql_file!(
    "../sql/lambda_fdw.sql",
    name = "lambda_fdw_objects",
    finalize
);
pgrx::extension_sql_file!("../sql/rds_api.sql", name = "aws_lambda_api");
pgrx::extension_sql_file!("../sql/queue.sql", name = "queue");
pgrx::extension_sql_file!("../sql/stats.sql", name = "stats", requires = ["queue"]);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a flag PostgreSQL sets while it loads shared_preload_libraries.
    let preloading = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    settings::guc::register(preloading);
    if preloading {
        queue::init_preloaded();
        stats::init_preloaded();
        pg::holds::init_preloaded();
        queue::register_launcher();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // Set, though this cluster does not preload the library: see
        // pg_tests' without_the_preload_settings_are_kept.
        vec!["lambda_fdw.max_queue_workers = 7"]
    }
}
