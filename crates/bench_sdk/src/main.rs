//! The baseline of the benchmark: N sequential Lambda invocations from a
//! standalone Rust program with aws-sdk-lambda, configured as lambda_fdw
//! configures its clients (static credentials, explicit region and endpoint,
//! no SDK retries), on a current-thread tokio runtime.
//!
//! Usage: bench_sdk ENDPOINT N  -> prints "sdk_per_call_us <value>"

use std::time::Instant;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_lambda::primitives::Blob;

fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:45661".into());
    let n: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let conf = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new(
            "AKIDBENCH",
            "bench-secret",
            None,
            None,
            "bench",
        ))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    let client = aws_sdk_lambda::Client::from_conf(conf);
    let payload = br#"{"i": 1}"#.to_vec();
    let call = || async {
        let out = client
            .invoke()
            .function_name("echo")
            .payload(Blob::new(payload.clone()))
            .send()
            .await
            .expect("an invocation of the stub");
        assert_eq!(out.status_code, 200);
    };
    rt.block_on(async {
        for _ in 0..50 {
            call().await;
        }
        let start = Instant::now();
        for _ in 0..n {
            call().await;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!("sdk_per_call_us {us:.1}");
    });
}
