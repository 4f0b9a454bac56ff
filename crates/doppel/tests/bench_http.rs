//! `doppel bench http`: the HTTP load generator of `scripts/bench-http`, run against a real hub
//! on a seeded store.

mod common;

use common::Server;
use common::http::HttpClient;
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

/// Twins in the seeded store: enough that four workers rarely hit the same twin at once.
const TWINS: usize = 200;

/// Runs `doppel bench http` against `hub` with `args` after the server's address.
fn bench_http(hub: &Server, args: &[&str]) -> Output {
    common::doppel_command()
        .args(["bench", "http", "--server", &hub.base])
        .args(args)
        .output()
        .expect("run doppel bench http")
}

/// A short run of `mode` at concurrency 4, which must succeed; the fields of its result line.
fn measured_run(hub: &Server, mode: &str) -> HashMap<String, f64> {
    let twins = TWINS.to_string();
    let output = bench_http(
        hub,
        &[
            "--mode",
            mode,
            "--twins",
            &twins,
            "--concurrency",
            "4",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {stdout}");
    let fields = lines[0]
        .strip_prefix("result ")
        .unwrap_or_else(|| panic!("a result line: {stdout}"));
    let mut numbers = HashMap::new();
    for field in fields.split(' ') {
        let (key, value) = field.split_once('=').expect("key=value");
        match key {
            "mode" => assert_eq!(value, mode),
            _ => {
                let number = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{field} in {stdout}"));
                numbers.insert(key.to_owned(), number);
            }
        }
    }
    numbers
}

fn seed(store: &Path) {
    common::seed_store(store, TWINS);
}

#[tokio::test]
async fn get_and_patch_runs_report_throughput_and_ordered_percentiles() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = dir.path().join("store");
    seed(&store);
    let hub = Server::start_in(&store, &[]);

    for mode in ["get", "patch"] {
        let result = measured_run(&hub, mode);
        let field = |key: &str| {
            *result
                .get(key)
                .unwrap_or_else(|| panic!("{mode}: no {key} in {result:?}"))
        };
        assert_eq!(field("concurrency"), 4.0, "{result:?}");
        assert!(field("requests") > 0.0, "{mode}: {result:?}");
        assert!(field("rate") > 0.0, "{mode}: {result:?}");
        assert_eq!(field("errors"), 0.0, "{mode}: {result:?}");
        let (p50, p99, p999) = (field("p50_ms"), field("p99_ms"), field("p999_ms"));
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= field("max_ms"),
            "{mode}: percentiles out of order: {result:?}"
        );
    }

    // The patches reached the twins: seeded twins all want 21.0, and 9 in 10 patches set
    // another value, so among a few hundred patches spread over 200 twins, most of the first
    // ten twins now want something else.
    let http = HttpClient::new(&hub);
    let mut changed = 0;
    for index in 0..10 {
        let twin = http.twin(&format!("sensor-{index:07}")).await;
        let wanted = &twin["desired"]["state"]["target_temperature"];
        assert!(wanted.is_number(), "{twin}");
        if wanted.as_f64() != Some(21.0) {
            changed += 1;
        }
    }
    assert!(changed > 0, "no twin's desired state was patched");
}

#[test]
fn unusable_flags_and_missing_twins_fail_with_one_line() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = dir.path().join("store");
    seed(&store);
    let hub = Server::start_in(&store, &[]);
    let cases: [(&[&str], &str); 3] = [
        (&["--mode", "get", "--concurrency", "0"], "--concurrency"),
        (
            &["--mode", "get", "--duration", "1s", "--warmup", "1s"],
            "--warmup",
        ),
        // More twins than the store holds: caught before the run, not as a flood of 404s.
        (&["--mode", "patch", "--twins", "500"], "sensor-0000499"),
    ];
    for (args, mentions) in cases {
        let output = bench_http(&hub, args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(output.stdout.is_empty(), "{args:?}: no result line");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    }
}
