//! Runs programs outside Rust (Python scripts, the mosquitto clients, openssl) for end-to-end
//! tests: every wait is bounded, and a failure shows what the program printed.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Longest a program may run. The clients bound each of their own waits at 10 s (the scripts'
/// `WAIT_SECONDS`, `mosquitto_sub -W`); this backstop only catches one that hangs anyway.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for one line from a running program.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// Fails the test, saying what to install, when a client it needs is missing. `check` runs once
/// per test binary (`checked` keeps its answer). Never a skip: a suite that silently ran nothing
/// would look green.
pub fn require_clients(
    checked: &OnceLock<Result<(), String>>,
    check: impl FnOnce() -> Result<(), String>,
    installs: &str,
) {
    if let Err(missing) = checked.get_or_init(check) {
        panic!("{missing}: run scripts/test, which installs {installs}");
    }
}

/// Whether `tool --help` starts at all.
pub fn tool_starts(tool: &str) -> Result<(), String> {
    std::process::Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|err| format!("{tool} cannot run ({err})"))
}

/// Runs `code` with `python3 -c`; when it fails, the error is `unable` and the last line the
/// code printed on stderr (`otherwise` when it printed none).
pub fn python_succeeds(code: &str, unable: &str, otherwise: &str) -> Result<(), String> {
    match std::process::Command::new("python3")
        .args(["-c", code])
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "{unable}: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or(otherwise)
        )),
        Err(err) => Err(format!("python3 cannot run ({err})")),
    }
}

/// `python3 tests/external/{name}`, which writes no `__pycache__` into the source tree.
pub fn python_script(name: &str) -> Command {
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "external", name]
        .iter()
        .collect();
    let mut command = Command::new("python3");
    command.env("PYTHONDONTWRITEBYTECODE", "1").arg(script);
    command
}

/// Runs `command` (`what`, in failure messages) to completion within [`PROCESS_TIMEOUT`].
pub async fn run(what: &str, command: Command) -> Output {
    run_fed(what, command, Stdio::null()).await
}

/// [`run`] with `stdin` as the command's standard input.
pub async fn run_fed(what: &str, mut command: Command, stdin: Stdio) -> Output {
    command.kill_on_drop(true).stdin(stdin);
    tokio::time::timeout(PROCESS_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} ran longer than {PROCESS_TIMEOUT:?}"))
        .unwrap_or_else(|err| {
            panic!("{what} cannot start ({err}); run scripts/test, which installs it")
        })
}

/// A program's exit status, stdout and stderr, for failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that `what` exited successfully, showing its output when it did not.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        describe(output)
    );
}

/// Each line of `stdout` parsed as JSON; a line that is not JSON fails the test.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
        })
        .collect()
}

/// A program still running, whose stdout is read line by line while it runs; dropping it kills
/// the program.
pub struct Running {
    what: &'static str,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far, for failure messages and [`Running::finish`].
    seen: Vec<String>,
}

impl Running {
    /// Starts `command` (`what`, in failure messages) with stdout and stderr piped.
    pub fn spawn(what: &'static str, mut command: Command) -> Running {
        let mut child = command
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{what} cannot start: {err}"));
        let stdout = child.stdout.take().expect("piped stdout");
        Running {
            what,
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// The next stdout line for which `wanted` holds, within [`LINE_TIMEOUT`]; `description`
    /// names it in failure messages.
    pub async fn line_where(&mut self, wanted: impl Fn(&str) -> bool, description: &str) -> String {
        let what = self.what;
        let found = tokio::time::timeout(LINE_TIMEOUT, async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "{what} ended before {description}: {}",
                describe(&self.wait().await)
            ),
            Err(_) => panic!(
                "{what} printed no {description} within {LINE_TIMEOUT:?}; so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for the program to exit; returns its output (stdout holds every line it printed)
    /// and those lines.
    pub async fn finish(mut self) -> (Output, Vec<String>) {
        let output = self.wait().await;
        (output, self.seen)
    }

    /// Reads the rest of stdout and waits for the exit, within [`PROCESS_TIMEOUT`].
    async fn wait(&mut self) -> Output {
        let what = self.what;
        let rest = tokio::time::timeout(PROCESS_TIMEOUT, async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                self.seen.push(line);
            }
            let mut stderr = Vec::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                pipe.read_to_end(&mut stderr).await.expect("read stderr");
            }
            let status = self.child.wait().await.expect("wait for the program");
            (status, stderr)
        })
        .await;
        let (status, stderr) =
            rest.unwrap_or_else(|_| panic!("{what} ran longer than {PROCESS_TIMEOUT:?}"));
        Output {
            status,
            stdout: self.seen.join("\n").into_bytes(),
            stderr,
        }
    }
}
