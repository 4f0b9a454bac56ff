//! What the crash tests share: a client for a server that is killed and restarted, starting a
//! server from async code, and the DOPPEL_CRASH_* settings.

use super::Server;
use std::path::Path;
use std::time::Duration;

/// A client whose requests give up after `timeout`. A request to a killed server fails at once,
/// so the timeout only catches a hang.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    // `no_proxy`: the test talks only to 127.0.0.1, whatever proxy the environment names.
    super::client_builder(Some(super::ADMIN_TOKEN))
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

/// A server on `data_dir` with `extra_args`, started off the async runtime (starting blocks
/// until the server is ready).
pub async fn start(data_dir: &Path, extra_args: &[&str]) -> Server {
    let data_dir = data_dir.to_owned();
    let extra_args: Vec<String> = extra_args.iter().map(|&arg| arg.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let extra_args: Vec<&str> = extra_args.iter().map(String::as_str).collect();
        Server::start_in(&data_dir, &extra_args)
    })
    .await
    .expect("server start task")
}

/// The environment variable `name` as a number; `None` when it is not set.
pub fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a non-negative integer, got {text:?}")),
    )
}
