//! Building SDK clients, and the per-backend cache of them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};

use crate::error::CoreResult;
use crate::limits::ResponseLimits;
use crate::runtime::{block_on, Interrupts};
use crate::settings::{ClientSettings, CredentialSource};

/// A Lambda client with the limits it was built with (for error messages).
#[derive(Clone)]
pub struct LambdaClient {
    pub(crate) inner: aws_sdk_lambda::Client,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_attempts: u32,
    /// The region, for the key of a throttling hold ([`crate::throttle`]).
    pub region: String,
}

thread_local! {
    static PROCESS_REGION: std::cell::OnceCell<Option<String>> = const { std::cell::OnceCell::new() };
    static CLIENTS: RefCell<HashMap<ClientSettings, LambdaClient>> = RefCell::new(HashMap::new());
    static BUILDS: Cell<u64> = const { Cell::new(0) };
}

/// How many clients this backend has built so far.
pub fn clients_built() -> u64 {
    BUILDS.with(Cell::get)
}

fn timeouts(s: &ClientSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(s.connect_timeout_ms))
        .operation_attempt_timeout(Duration::from_millis(s.request_timeout_ms))
        .build()
}

/// STS (for role_arn) keeps the SDK's standard retries: its calls are idempotent.
fn sts_retries(s: &ClientSettings) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(s.max_attempts)
}

async fn base_credentials(s: &ClientSettings) -> SharedCredentialsProvider {
    match &s.credentials {
        CredentialSource::DefaultChain => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .region(Region::new(s.region.clone()))
                .build()
                .await,
        ),
        CredentialSource::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => SharedCredentialsProvider::new(Credentials::new(
            access_key_id.clone(),
            secret_access_key.clone(),
            session_token.clone(),
            None,
            "lambda_fdw user mapping",
        )),
        CredentialSource::Profile(name) => SharedCredentialsProvider::new(
            ProfileFileCredentialsProvider::builder()
                .profile_name(name)
                .build(),
        ),
    }
}

async fn build_client(s: &ClientSettings) -> LambdaClient {
    let region = Region::new(s.region.clone());
    let mut provider = base_credentials(s).await;
    if let Some(role) = &s.assume_role {
        // STS goes to the same endpoint override (an emulator or a VPC endpoint
        // serves both), with the same limits.
        let mut sts = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .timeout_config(timeouts(s))
            .retry_config(sts_retries(s))
            .time_source(SharedTimeSource::new(SystemTimeSource::new()));
        if let Some(sleep) = default_async_sleep() {
            sts = sts.sleep_impl(sleep);
        }
        if let Some(e) = &s.endpoint_url {
            sts = sts.endpoint_url(e.clone());
        }
        let mut builder = AssumeRoleProvider::builder(role.role_arn.clone())
            .session_name("lambda_fdw")
            .region(region.clone())
            .configure(&sts.build());
        if let Some(id) = &role.external_id {
            builder = builder.external_id(id.clone());
        }
        provider = SharedCredentialsProvider::new(builder.build_from_provider(provider).await);
    }
    let mut conf = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(provider)
        .timeout_config(timeouts(s))
        // Invocations are retried by crate::retry, which knows which
        // failures may have run the function.
        .retry_config(RetryConfig::disabled())
        // No response larger than Lambda returns, and no stored header
        // longer than Lambda sends, is read whole (crate::limits).
        .interceptor(ResponseLimits);
    if let Some(e) = &s.endpoint_url {
        conf = conf.endpoint_url(e.clone());
    }
    LambdaClient {
        inner: aws_sdk_lambda::Client::from_conf(conf.build()),
        connect_timeout_ms: s.connect_timeout_ms,
        request_timeout_ms: s.request_timeout_ms,
        max_attempts: s.max_attempts.max(1),
        region: s.region.clone(),
    }
}

/// The region of the server process's AWS configuration (`AWS_REGION`,
/// `AWS_DEFAULT_REGION`, the profile files, instance metadata unless
/// disabled), looked up once per backend.
pub fn process_default_region(interrupts: &Interrupts) -> CoreResult<Option<String>> {
    if let Some(r) = PROCESS_REGION.with(|c| c.get().cloned()) {
        return Ok(r);
    }
    let region = block_on(
        async {
            aws_config::default_provider::region::DefaultRegionChain::builder()
                .build()
                .region()
                .await
                .map(|r| r.to_string())
        },
        interrupts,
    )?;
    PROCESS_REGION.with(|c| {
        let _ = c.set(region.clone());
    });
    Ok(region)
}

/// Returns this backend's client for `settings`, building it on first use.
pub fn client_for(settings: &ClientSettings, interrupts: &Interrupts) -> CoreResult<LambdaClient> {
    if let Some(c) = CLIENTS.with(|m| m.borrow().get(settings).cloned()) {
        return Ok(c);
    }
    let client = block_on(build_client(settings), interrupts)?;
    CLIENTS.with(|m| {
        m.borrow_mut().insert(settings.clone(), client.clone());
    });
    BUILDS.with(|b| b.set(b.get() + 1));
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lookup_reuses_the_client() {
        let before = clients_built();
        let mut s = ClientSettings::new("us-east-1");
        s.endpoint_url = Some("http://127.0.0.1:9".into());
        s.credentials = CredentialSource::Static {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
            session_token: None,
        };
        client_for(&s, &Interrupts::NONE).unwrap();
        client_for(&s, &Interrupts::NONE).unwrap();
        assert_eq!(clients_built(), before + 1);
        s.request_timeout_ms = 10;
        client_for(&s, &Interrupts::NONE).unwrap();
        assert_eq!(clients_built(), before + 2);
    }
}
