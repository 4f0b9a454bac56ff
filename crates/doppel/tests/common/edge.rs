//! Starts the real `doppel edge` agent for end-to-end tests, and waits for replicas to agree.

use super::{START_TIMEOUT, doppel_command, read_lines};
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// How long replicas may take to agree after a link heals: generous, the machines are shared.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `doppel edge`.
pub struct EdgeAgent {
    child: Child,
    /// e.g. `http://127.0.0.1:41234`
    pub base: String,
    pub id: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    client: reqwest::Client,
}

impl EdgeAgent {
    /// An agent `id` for `devices` (device id, hub password) that reaches the hub at `hub`
    /// (usually a fault proxy), on `data_dir`, with the replication `rules` file if any,
    /// syncing every second and reconnecting quickly.
    pub fn start_with_rules(
        hub: SocketAddr,
        id: &str,
        devices: &[(&str, &str)],
        data_dir: &Path,
        rules: Option<&Path>,
    ) -> Self {
        let credentials = data_dir.with_extension("credentials.toml");
        let lines: String = devices
            .iter()
            .map(|(device, password)| format!("{device:?} = {password:?}\n"))
            .collect();
        std::fs::write(&credentials, lines).expect("write the credentials file");
        let mut args = vec![
            "edge".to_owned(),
            "--hub".to_owned(),
            hub.to_string(),
            "--id".to_owned(),
            id.to_owned(),
            "--credentials".to_owned(),
            credentials.display().to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--http-addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--sync-interval".to_owned(),
            "1s".to_owned(),
            "--reconnect-delay".to_owned(),
            "100ms".to_owned(),
        ];
        if let Some(rules) = rules {
            args.push("--rules".to_owned());
            args.push(rules.display().to_string());
        }
        for (device, _) in devices {
            args.push("--device".to_owned());
            args.push((*device).to_owned());
        }
        let (child, base) = launch(&args);
        EdgeAgent {
            child,
            base,
            id: id.to_owned(),
            data_dir: data_dir.to_owned(),
            args,
            client: super::http_client(),
        }
    }

    /// Kills the agent without warning (SIGKILL) and starts it again on the same data folder.
    pub fn restart(&mut self) {
        self.kill();
        let (child, base) = launch(&self.args);
        self.child = child;
        self.base = base;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path` of the local API; the status and the JSON body (`null` when empty).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path} on edge {}: {err}", self.id));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends `body` with `method` to `path`; the status and the JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method.clone(), self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {path} on edge {}: {err}", self.id));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// PATCHes the reported state of `device`'s twin at the edge, which must succeed: the
    /// local API serves whether or not the hub is reachable.
    pub async fn report(&self, device: &str, patch: &Value) -> Value {
        let body = serde_json::json!({ "state": patch });
        self.patch_ok(&format!("/v1/twins/{device}/reported"), &body)
            .await
    }

    /// PATCHes the desired state of `device`'s twin at the edge, which must succeed.
    pub async fn set_desired(&self, device: &str, patch: &Value) -> Value {
        self.patch_ok(&format!("/v1/twins/{device}/desired"), patch)
            .await
    }

    async fn patch_ok(&self, path: &str, body: &Value) -> Value {
        let (status, twin) = self.send(reqwest::Method::PATCH, path, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "edge {}: PATCH {path} {body}: {twin}",
            self.id
        );
        twin
    }

    /// The twin of `device` at the edge, which must exist.
    pub async fn twin(&self, device: &str) -> Value {
        let (status, twin) = self.get(&format!("/v1/twins/{device}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "edge {}: GET twin {device}: {twin}",
            self.id
        );
        twin
    }

    /// `GET /v1/edge/status`.
    pub async fn status(&self) -> Value {
        let (status, body) = self.get("/v1/edge/status").await;
        assert_eq!(status, StatusCode::OK, "edge {}: status: {body}", self.id);
        body
    }

    /// Waits until the agent reports its links to the hub up (`true`) or not.
    pub async fn wait_linked(&self, linked: bool) {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let status = self.status().await;
            if status["hub"]["partitioned"] == Value::Bool(!linked) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "edge {}: links never became {}: {status}",
                self.id,
                if linked { "up" } else { "down" }
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EdgeAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn launch(args: &[String]) -> (Child, String) {
    let mut child = doppel_command()
        .args(args)
        .env("DOPPEL_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn doppel edge");
    let lines = read_lines(child.stdout.take().expect("piped stdout"));
    let mut base = None;
    loop {
        let Ok(line) = lines.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            panic!("doppel edge did not become ready within {START_TIMEOUT:?} (or exited)");
        };
        if let Some(addr) = line.strip_prefix("doppel edge listening on ") {
            base = Some(addr.trim().to_owned());
        }
        if line.trim() == "doppel edge ready" {
            break;
        }
    }
    (
        child,
        base.expect("the listening line comes before the ready line"),
    )
}

/// The replicated part of a twin (reported and desired state), to compare replicas by.
pub fn replicated_state(twin: &Value) -> Value {
    serde_json::json!({
        "reported": twin["reported"]["state"],
        "desired": twin["desired"]["state"],
    })
}
