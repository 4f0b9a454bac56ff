//! Starts the real `doppel` binary for end-to-end tests: port 0, its own data folder, and no
//! DOPPEL_* variables from the caller's environment.
#![allow(dead_code)] // Each test file uses a different part of the harness.

pub mod api;
pub mod certs;
pub mod crash;
pub mod edge;
pub mod http;
pub mod idp;
pub mod metrics;
pub mod mqtt;
pub mod mqtt5;
pub mod process;
pub mod raw;
pub mod sse;
pub mod tokens;
pub mod topic;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a server may take to print `doppel ready`: generous, because CI machines are shared.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn doppel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_doppel")
}

/// The first admin token of every server the tests start, and the token of every CLI command
/// they run (each server is new, so one known secret serves them all).
pub const ADMIN_TOKEN: &str = "dpt_T3st-Adm1n_tok3n-F0r-Ev3ry-T3st-S3rv3r-AbCdEfGhIj";

/// A `doppel` command with a clean environment as far as Doppel is concerned, but for the test
/// admin token: servers make it their first token, CLI commands send it.
pub fn doppel_command() -> Command {
    let mut command = Command::new(doppel_bin());
    for (name, _) in std::env::vars() {
        if name.starts_with("DOPPEL_") {
            command.env_remove(name);
        }
    }
    command
        .env("DOPPEL_HTTP_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        .env("DOPPEL_TOKEN", ADMIN_TOKEN)
        // No profile of the machine's user may creep in.
        .env("DOPPEL_CLI_CONFIG", "/nonexistent/doppel-cli.toml");
    command
}

pub struct Server {
    child: Child,
    /// e.g. `http://127.0.0.1:41234`
    pub base: String,
    /// The plain MQTT listener.
    pub mqtt: std::net::SocketAddr,
    /// Other MQTT listeners by scheme (`mqtts`, `ws`), when configured.
    pub mqtt_listeners: Vec<(String, std::net::SocketAddr)>,
    pub data_dir: PathBuf,
    /// Keeps the data folder alive for the test when the harness created it.
    _owned_dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh temporary data folder.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temporary data folder");
        let mut server = Self::start_in(dir.path(), extra_args);
        server._owned_dir = Some(dir);
        server
    }

    /// A server on `data_dir`, which the caller keeps (for restarts).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Server {
        Self::start_in_with_env(data_dir, &[], extra_args)
    }

    /// A server on a fresh temporary data folder whose stderr (its log) comes line by line
    /// through the receiver instead of going to the test's stderr.
    pub fn start_capturing_stderr(extra_args: &[&str]) -> (Server, mpsc::Receiver<String>) {
        let dir = tempfile::tempdir().expect("temporary data folder");
        let (mut server, stderr) = Self::launch(dir.path(), &[], extra_args, true, None);
        server._owned_dir = Some(dir);
        (server, stderr.expect("stderr is captured"))
    }

    /// A server on `data_dir` with extra environment variables (such as DOPPEL_* settings).
    pub fn start_in_with_env(data_dir: &Path, env: &[(&str, &str)], extra_args: &[&str]) -> Server {
        Self::launch(data_dir, env, extra_args, false, None).0
    }

    /// A server on a fresh temporary data folder whose open-files limit (soft and hard) is
    /// `open_files`, as a machine with a low `ulimit -n` has.
    pub fn start_with_open_files(open_files: u64, extra_args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temporary data folder");
        let (mut server, _) = Self::launch(dir.path(), &[], extra_args, false, Some(open_files));
        server._owned_dir = Some(dir);
        server
    }

    fn launch(
        data_dir: &Path,
        env: &[(&str, &str)],
        extra_args: &[&str],
        capture_stderr: bool,
        open_files: Option<u64>,
    ) -> (Server, Option<mpsc::Receiver<String>>) {
        let mut command = doppel_command();
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
            }
        }
        let mut child = command
            .envs(env.iter().copied())
            .args(SERVE_ON_FREE_PORTS)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("DOPPEL_LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(if capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("spawn doppel serve");
        let lines_rx = read_lines(child.stdout.take().expect("piped stdout"));
        let stderr = child.stderr.take().map(read_lines);
        let mut base = None;
        let mut mqtt_listeners = Vec::new();
        loop {
            let line = match lines_rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("doppel did not become ready within {START_TIMEOUT:?} (or exited)");
                }
            };
            if let Some(addr) = line.strip_prefix("doppel listening on ") {
                base = Some(addr.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("doppel mqtt listening on ") {
                let (scheme, addr) = url.trim().split_once("://").expect("scheme://addr");
                mqtt_listeners.push((scheme.to_owned(), addr.parse().expect("socket address")));
            }
            if line.trim() == "doppel ready" {
                break;
            }
        }
        let server = Server {
            child,
            base: base.expect("the listening line comes before the ready line"),
            mqtt: find_listener(&mqtt_listeners, "mqtt")
                .expect("the MQTT listening line comes before the ready line"),
            mqtt_listeners,
            data_dir: data_dir.to_owned(),
            _owned_dir: None,
        };
        (server, stderr)
    }

    /// The server's process id (for its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The MQTT listener of `scheme` (`mqtt`, `mqtts`, `ws`), when the server has one.
    pub fn listener(&self, scheme: &str) -> Option<std::net::SocketAddr> {
        find_listener(&self.mqtt_listeners, scheme)
    }

    /// The address of the HTTP API, whether it speaks http:// or https://.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, addr)| addr)
            .parse()
            .expect("the HTTP address")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Kills the process without warning, as a power cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the server SIGHUP, which makes it read its TLS and JWKS files again.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Asks the server to stop (SIGTERM) and waits for it; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        self.child
            .wait()
            .map(|status| status.success())
            .unwrap_or(false)
    }
}

/// `doppel serve` on port 0 as an operator starts it, without the harness's log level and
/// without waiting for it: for tests that watch its log, or call it while it is still loading,
/// which [`Server`] (ready when it returns) cannot. Killed when dropped.
pub struct Serving {
    child: Child,
    /// Its standard output line by line (the `doppel listening on` lines).
    pub stdout: mpsc::Receiver<String>,
    /// Its log line by line.
    pub stderr: mpsc::Receiver<String>,
}

impl Serving {
    /// Starts `doppel serve` on `data_dir` with `env` (such as DOPPEL_* settings).
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> Serving {
        let mut child = doppel_command()
            .args(SERVE_ON_FREE_PORTS)
            .arg("--data-dir")
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn doppel serve");
        let stdout = read_lines(child.stdout.take().expect("piped stdout"));
        let stderr = read_lines(child.stderr.take().expect("piped stderr"));
        Serving {
            child,
            stdout,
            stderr,
        }
    }

    /// The base URL of the HTTP API, once it listens: it answers from then on, before the
    /// store is loaded.
    pub fn base(&self) -> String {
        loop {
            let line = self
                .stdout
                .recv_timeout(START_TIMEOUT)
                .expect("doppel serve printed its listening line");
            if let Some(base) = line.strip_prefix("doppel listening on ") {
                return base.trim().to_owned();
            }
        }
    }

    /// Asks the server to stop (SIGTERM) and waits until it has; its log is complete then.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a child's output, read on a thread of their own so the child never blocks on
/// a full pipe.
pub fn read_lines(output: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            // Nobody listening any more: keep draining anyway.
            let _ = lines_tx.send(line);
        }
    });
    lines_rx
}

/// Waits (bounded by `wait`) for a line of a server's log (see
/// [`Server::start_capturing_stderr`]) that contains `text`, and returns it. Blocking: from an
/// async test that has other work in flight, call it on a blocking thread.
pub fn log_line(log: &mpsc::Receiver<String>, text: &str, wait: Duration) -> String {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with {text:?} within {wait:?}"),
        }
    }
}

/// Runs `doppel serve` with `env` and `args`, which must fail to start with exactly one line on
/// stderr; returns it. A server that starts anyway is killed, failing the test, after
/// [`START_TIMEOUT`].
pub fn serve_fails(env: &[(&str, &str)], args: &[&str]) -> String {
    let mut child = doppel_command()
        .envs(env.iter().copied())
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn doppel serve");
    let stderr = read_lines(child.stderr.take().expect("piped stderr"));
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for doppel serve") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {args:?} should have failed, but it kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "serve {args:?} should have failed");
    // The reader ends at the end of the output, which the exit has closed.
    let lines: Vec<String> = stderr.iter().collect();
    assert_eq!(lines.len(), 1, "one line, got: {lines:?}");
    format!("{}\n", lines[0])
}

/// The address of the listener of `scheme` among `(scheme, address)` pairs.
fn find_listener(
    listeners: &[(String, std::net::SocketAddr)],
    scheme: &str,
) -> Option<std::net::SocketAddr> {
    listeners
        .iter()
        .find(|(listener, _)| listener == scheme)
        .map(|(_, addr)| *addr)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long the tests' HTTP clients keep an idle connection: under the hub's
/// `http.header_timeout` (10 s), after which the hub closes it, so that a request is never sent
/// on a connection the hub is closing.
pub const HTTP_IDLE: Duration = Duration::from_secs(5);

/// How every HTTP client of the tests starts: idle connections dropped after [`HTTP_IDLE`], and
/// every request carrying `Authorization: Bearer {token}` when a token is given.
fn client_builder(token: Option<&str>) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let bearer = format!("Bearer {token}");
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&bearer).expect("a header value"),
        );
    }
    reqwest::Client::builder()
        .pool_idle_timeout(HTTP_IDLE)
        .default_headers(headers)
}

/// The tests' HTTP client: every request carries the test admin token.
pub fn http_client() -> reqwest::Client {
    http_client_with_token(ADMIN_TOKEN)
}

/// An HTTP client whose every request carries `token` (for helpers such as `SseClient` that
/// take a client).
pub fn http_client_with_token(token: &str) -> reqwest::Client {
    client_builder(Some(token)).build().expect("an HTTP client")
}

/// An HTTP client that sends no token, for the tests of what happens without one.
pub fn anonymous_http_client() -> reqwest::Client {
    client_builder(None).build().expect("an HTTP client")
}

/// Starts a 60 s long poll for pump-7's next command as `bearer`, for the tests that end the
/// bearer's access while it waits; the task resolves to the status the poll was answered with.
pub fn spawn_long_poll(
    server: &Server,
    bearer: String,
) -> tokio::task::JoinHandle<reqwest::StatusCode> {
    let url = server.url("/v1/tenants/default/twins/pump-7/commands/next?wait=60");
    tokio::spawn(async move {
        anonymous_http_client()
            .get(url)
            .bearer_auth(bearer)
            .send()
            .await
            .expect("the long poll answers")
            .status()
    })
}

/// Checks that a poll from [`spawn_long_poll`] was ended as unauthorised within `wait`, long
/// before the 60 s it asked to wait.
pub async fn assert_long_poll_refused(
    poll: tokio::task::JoinHandle<reqwest::StatusCode>,
    wait: Duration,
) {
    let status = tokio::time::timeout(wait, poll)
        .await
        .expect("the long poll ended long before its 60 s")
        .expect("the poll task");
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
}

/// The tests' HTTPS client, with the admin token: trusts only the PEM CAs in `ca_file`, and reports each
/// connection's peer certificate (`reqwest::tls::TlsInfo` in a response's extensions).
pub fn https_client(ca_file: &Path) -> reqwest::Client {
    let ca = std::fs::read(ca_file).expect("read the CA file");
    client_builder(Some(ADMIN_TOKEN))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM CA"))
        .tls_info(true)
        .build()
        .expect("an HTTPS client")
}

/// Reads until the server closes the socket; `true` when it did within `within`.
pub async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// `doppel serve` with both listeners on ports the system picks, so that tests run side by side
/// and beside a running hub.
pub const SERVE_ON_FREE_PORTS: [&str; 5] = [
    "serve",
    "--http-addr",
    "127.0.0.1:0",
    "--mqtt-addr",
    "127.0.0.1:0",
];

/// Waits until `check` holds, asking again every 50 ms; fails the test after `wait`.
pub async fn eventually<F, Fut>(what: &str, wait: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_value(what, wait, || {
        let holds = check();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        }
    })
    .await
}

/// Waits until `check` gives a value, asking again every 50 ms; fails the test after `wait`,
/// saying what `check` last said instead.
pub async fn eventually_value<T, F, Fut>(what: &str, wait: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not happen within {wait:?}; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The seconds since the Unix epoch, as AWS writes its timestamps.
pub fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Where a test file's client commands put `--server <base>` among their arguments: the
/// command line for `args` against the server at `base`.
pub type CliArguments = fn(base: &str, args: &[&str]) -> Vec<String>;

/// A server and the `doppel` client commands run against it.
pub struct Cli {
    pub server: Server,
    arguments: CliArguments,
}

impl Cli {
    /// A fresh server; `arguments` places `--server` in each command line.
    pub fn start(arguments: CliArguments) -> Cli {
        Cli {
            server: Server::start(),
            arguments,
        }
    }

    /// Runs a command against the server, with `stdin` piped in when given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&(self.arguments)(&self.server.base, args), stdin)
    }

    /// Runs a command that must succeed and returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        cli_succeeded(self.run(args, None), args)
    }

    /// Runs a command that must fail and returns its one-line error.
    pub fn fails(&self, args: &[&str]) -> String {
        cli_failed(self.run(args, None), args)
    }
}

/// Data lines of a table the CLI prints: every line but the header and the `next cursor` line.
pub fn rows(table: &str) -> Vec<&str> {
    table
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("next cursor:"))
        .collect()
}

/// Runs `doppel <args...>` to its end, with `stdin` piped in when given (no input otherwise).
pub fn run_cli(args: &[String], stdin: Option<&str>) -> Output {
    let mut child = doppel_command()
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn doppel");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("doppel runs to the end")
}

/// Checks that a CLI command succeeded and returns its standard output.
pub fn cli_succeeded(output: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "doppel {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Checks the CLI's failure contract: exit code 1, nothing on stdout, exactly one `doppel: `
/// line on stderr. Returns that line without the prefix.
pub fn cli_failed(output: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "doppel {args:?} should fail with 1; stderr: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout when failing: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line of error: {stderr:?}");
    stderr
        .strip_prefix("doppel: ")
        .unwrap_or_else(|| panic!("error starts with `doppel: `: {stderr:?}"))
        .trim_end()
        .to_owned()
}

/// Runs `doppel bench seed` for `twins` twins into `store`, which must succeed; its stdout.
pub fn seed_store(store: &Path, twins: usize) -> String {
    let output = doppel_command()
        .args(["bench", "seed", "--twins", &twins.to_string(), "--data-dir"])
        .arg(store)
        .output()
        .expect("run doppel bench seed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
