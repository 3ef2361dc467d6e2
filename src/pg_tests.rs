//! In-database tests (`cargo pgrx test`): what only a running backend shows.
//! They need ministack with the fixture functions on 127.0.0.1 (port from
//! LAMBDA_FDW_MINISTACK_PORT, default 45660), as `tests/run` provides.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use lambda_fdw_core::client::clients_built;

    fn setup_server() {
        let port = std::env::var("LAMBDA_FDW_MINISTACK_PORT").unwrap_or_else(|_| "45660".into());
        Spi::run(&format!(
            "CREATE SERVER pgt FOREIGN DATA WRAPPER lambda_fdw \
             OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:{port}', max_attempts '1')"
        ))
        .unwrap();
        Spi::run(
            "CREATE USER MAPPING FOR CURRENT_USER SERVER pgt \
             OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key')",
        )
        .unwrap();
        Spi::run(
            "CREATE FOREIGN TABLE pgt_echo (payload jsonb, status_code int, response jsonb) \
             SERVER pgt OPTIONS (function_name 'echo')",
        )
        .unwrap();
    }

    #[pg_test]
    fn the_second_call_reuses_the_client() {
        setup_server();
        let before = clients_built();
        for n in 0..3 {
            let status = Spi::get_one::<i32>(&format!(
                "SELECT status_code FROM aws_lambda.invoke('echo', '{{\"n\": {n}}}'::json, 'us-east-1')"
            ))
            .unwrap();
            assert_eq!(status, Some(200));
        }
        // Foreign-table scans through the same server share the client too.
        let response = Spi::get_one::<pgrx::JsonB>(
            "SELECT response FROM pgt_echo WHERE payload = '{\"t\": 1}'",
        )
        .unwrap()
        .map(|j| j.0);
        assert_eq!(response, Some(serde_json::json!({"t": 1})));
        assert_eq!(clients_built() - before, 1);
    }

    #[pg_test]
    fn a_changed_setting_is_a_new_client() {
        setup_server();
        let before = clients_built();
        Spi::run("SELECT * FROM pgt_echo WHERE payload = '1'").unwrap();
        Spi::run("ALTER SERVER pgt OPTIONS (ADD request_timeout_ms '4000')").unwrap();
        Spi::run("SELECT * FROM pgt_echo WHERE payload = '2'").unwrap();
        Spi::run("SELECT * FROM pgt_echo WHERE payload = '3'").unwrap();
        assert_eq!(clients_built() - before, 2);
    }

    #[pg_test]
    fn a_fan_out_returns_rows_in_request_order() {
        setup_server();
        let got = Spi::connect(|client| {
            client
                .select(
                    "SELECT response->>'n' FROM pgt_echo \
                     WHERE payload IN ('{\"n\": \"c\"}', '{\"n\": \"a\"}', '{\"n\": \"b\"}')",
                    None,
                    &[],
                )
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(got, vec!["c", "a", "b"]);
    }

    /// This cluster does not preload the library: enqueueing still works,
    /// and the rows wait for a worker.
    #[pg_test]
    fn without_the_preload_invocations_wait() {
        setup_server();
        let id = Spi::get_one::<i64>(
            "SELECT lambda_fdw.enqueue('echo', '{\"waits\": true}', 'us-east-1')",
        )
        .unwrap()
        .unwrap();
        Spi::run("INSERT INTO pgt_echo (payload) VALUES ('{\"waits\": 2}')").unwrap();
        let waiting = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM lambda_fdw.invocations \
             WHERE state = 'queued' AND attempts = 0 AND id >= {id}"
        ))
        .unwrap();
        assert_eq!(waiting, Some(2));
        assert!(!crate::queue::preloaded());
    }

    /// Without the preload nothing is counted: a call works, and reading
    /// the statistics says why there are none.
    #[pg_test(
        error = "lambda_fdw must be loaded via \"shared_preload_libraries\" to count invocations"
    )]
    fn without_the_preload_statistics_are_an_error() {
        setup_server();
        let status =
            Spi::get_one::<i32>("SELECT status_code FROM pgt_echo WHERE payload = '{\"n\": 1}'");
        assert_eq!(status, Ok(Some(200)));
        Spi::run("SELECT * FROM lambda_fdw.stat_invocations").unwrap();
    }

    /// Without the preload, the queue's settings from postgresql.conf are
    /// still this library's (none is removed as unknown, with a warning).
    #[pg_test]
    fn without_the_preload_settings_are_kept() {
        let workers = Spi::get_one::<String>("SHOW lambda_fdw.max_queue_workers");
        assert_eq!(workers, Ok(Some("7".to_string())));
    }

    #[pg_test(
        error = "lambda_fdw must be loaded via \"shared_preload_libraries\" to count invocations"
    )]
    fn without_the_preload_reset_is_an_error() {
        Spi::run("SELECT lambda_fdw.stat_invocations_reset()").unwrap();
    }
}
