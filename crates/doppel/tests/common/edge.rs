//! Starts the real `doppel edge` agent for end-to-end tests, and waits for replicas to agree.

use super::http::HttpClient;
use super::{START_TIMEOUT, doppel_command, read_lines};
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long replicas may take to agree after a link heals: generous, the machines are shared.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The first admin token of every agent the tests start (their `DOPPEL_HTTP_BOOTSTRAP_TOKEN`),
/// unlike the hubs' [`super::ADMIN_TOKEN`], so that a test sees which token reaches what.
pub const EDGE_TOKEN: &str = "dpt_3dg3-Ag3nt_T0k3n-f0r-Ev3ry-T3st-Ag3nt-KlMnOpQrStUv";

/// How a test starts an agent, beyond the hub, id, devices and data folder.
#[derive(Clone, Copy, Default)]
pub struct EdgeOptions<'a> {
    /// The replication rules file (`--rules`).
    pub rules: Option<&'a Path>,
    /// More arguments, such as `--hub-ca-file`.
    pub extra_args: &'a [&'a str],
    /// Serve the local API on this Unix socket (`--http-unix-socket`) instead of TCP.
    pub unix_socket: Option<&'a Path>,
    /// Start without `DOPPEL_HTTP_BOOTSTRAP_TOKEN`, as an operator does: the agent draws its
    /// first token, and the harness's client reads it from `admin.token`.
    pub draw_own_token: bool,
    /// Keep the agent's log (stderr, warnings and worse) for [`EdgeAgent::wait_for_log`]
    /// instead of passing it to the test's stderr.
    pub capture_log: bool,
}

/// A running `doppel edge`.
pub struct EdgeAgent {
    child: Child,
    /// e.g. `http://127.0.0.1:41234`, or `unix:/tmp/.../edge.sock`
    pub base: String,
    pub id: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    capture_log: bool,
    /// The agent's log lines, when captured.
    log: Option<mpsc::Receiver<String>>,
    /// Sends the agent's admin token with every request.
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
        let options = EdgeOptions {
            rules,
            ..EdgeOptions::default()
        };
        Self::start(&hub.to_string(), id, devices, data_dir, options)
    }

    /// An agent as [`EdgeAgent::start_with_rules`] starts one, reaching the hub named by `hub`
    /// as `--hub` takes it (`host:port`, `mqtts://host:port`), with `options`.
    pub fn start(
        hub: &str,
        id: &str,
        devices: &[(&str, &str)],
        data_dir: &Path,
        options: EdgeOptions<'_>,
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
            hub.to_owned(),
            "--id".to_owned(),
            id.to_owned(),
            "--credentials".to_owned(),
            credentials.display().to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--sync-interval".to_owned(),
            "1s".to_owned(),
            "--reconnect-delay".to_owned(),
            "100ms".to_owned(),
        ];
        match options.unix_socket {
            Some(socket) => {
                args.push("--http-unix-socket".to_owned());
                args.push(socket.display().to_string());
            }
            None => {
                args.push("--http-addr".to_owned());
                args.push("127.0.0.1:0".to_owned());
            }
        }
        if let Some(rules) = options.rules {
            args.push("--rules".to_owned());
            args.push(rules.display().to_string());
        }
        args.extend(options.extra_args.iter().map(|arg| (*arg).to_owned()));
        for (device, _) in devices {
            args.push("--device".to_owned());
            args.push((*device).to_owned());
        }
        let launched = launch(&args, options);
        let client = match options.draw_own_token {
            true => edge_client(&read_admin_token(data_dir)),
            false => edge_client(EDGE_TOKEN),
        };
        EdgeAgent {
            child: launched.child,
            base: launched.base,
            id: id.to_owned(),
            data_dir: data_dir.to_owned(),
            args,
            capture_log: options.capture_log,
            log: launched.log,
            client,
        }
    }

    /// The secret in the agent's `admin.token`.
    pub fn admin_token(&self) -> String {
        read_admin_token(&self.data_dir)
    }

    /// The client that sends the agent's admin token.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Waits until a line of the agent's log contains `needle`, and returns it; fails the test
    /// after `wait` (or when the agent's log was not captured).
    pub fn wait_for_log(&self, needle: &str, wait: Duration) -> String {
        let log = self.log.as_ref().expect("start the agent with capture_log");
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "edge {}: no log line with {needle:?} within {wait:?}",
                    self.id
                ),
            }
        }
    }

    /// Kills the agent without warning (SIGKILL) and starts it again on the same data folder,
    /// with the same token: an agent whose store has tokens makes no new one.
    pub fn restart(&mut self) {
        self.kill();
        let options = EdgeOptions {
            capture_log: self.capture_log,
            ..EdgeOptions::default()
        };
        let launched = launch(&self.args, options);
        self.child = launched.child;
        self.base = launched.base;
        self.log = launched.log;
    }

    /// Asks the agent to stop (SIGTERM) and waits for it; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status();
        self.child
            .wait()
            .map(|status| status.success())
            .unwrap_or(false)
    }

    /// Stops the agent as [`EdgeAgent::stop`] does and returns the rest of its captured log,
    /// up to its last line (the agent closes its stderr when it exits).
    pub fn stop_and_read_log(&mut self) -> Vec<String> {
        assert!(self.stop(), "edge {} did not stop cleanly", self.id);
        let log = self.log.as_ref().expect("start the agent with capture_log");
        let mut lines = Vec::new();
        while let Ok(line) = log.recv_timeout(START_TIMEOUT) {
            lines.push(line);
        }
        lines
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The local API, through the client that sends the agent's admin token; made per call,
    /// since a restart moves the agent to a new port.
    fn api(&self) -> HttpClient {
        HttpClient::at(&self.base, self.client.clone())
    }

    /// GETs `path` of the local API; the status and the JSON body (`null` when empty).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let api = self.api();
        let reply = api.send(api.request(reqwest::Method::GET, path)).await;
        (reply.status, reply.json_or_null())
    }

    /// Sends `body` with `method` to `path`; the status and the JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let api = self.api();
        let reply = api.send(api.request(method, path).json(body)).await;
        (reply.status, reply.json_or_null())
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
        let what = format!(
            "edge {}: links becoming {}",
            self.id,
            if linked { "up" } else { "down" }
        );
        super::eventually_value(&what, CONVERGE_TIMEOUT, || async {
            let status = self.status().await;
            if status["hub"]["partitioned"] == Value::Bool(!linked) {
                Ok(())
            } else {
                Err(status.to_string())
            }
        })
        .await
    }
}

impl Drop for EdgeAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A started agent process.
struct Launched {
    child: Child,
    base: String,
    log: Option<mpsc::Receiver<String>>,
}

/// Starts `doppel edge args...` and waits until it is ready. Only `draw_own_token` and
/// `capture_log` of `options` matter here; the rest is in `args`.
fn launch(args: &[String], options: EdgeOptions<'_>) -> Launched {
    let mut command = doppel_command();
    command
        .args(args)
        .env("DOPPEL_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(if options.capture_log {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    if options.draw_own_token {
        command.env_remove("DOPPEL_HTTP_BOOTSTRAP_TOKEN");
    } else {
        command.env("DOPPEL_HTTP_BOOTSTRAP_TOKEN", EDGE_TOKEN);
    }
    let mut child = command.spawn().expect("spawn doppel edge");
    let log = child.stderr.take().map(read_lines);
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
    Launched {
        child,
        base: base.expect("the listening line comes before the ready line"),
        log,
    }
}

/// The secret in `{data_dir}/admin.token`.
fn read_admin_token(data_dir: &Path) -> String {
    let file = data_dir.join("admin.token");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|err| panic!("read {}: {err}", file.display()))
        .trim()
        .to_owned()
}

/// A client for an agent's local API that sends `token`.
pub fn edge_client(token: &str) -> reqwest::Client {
    super::http_client_with_token(token)
}

/// The replicated part of a twin (reported and desired state), to compare replicas by.
pub fn replicated_state(twin: &Value) -> Value {
    serde_json::json!({
        "reported": twin["reported"]["state"],
        "desired": twin["desired"]["state"],
    })
}
