//! `doppel sim` end to end: the real simulator against the real hub, with partitions, desired
//! changes and a command arriving while it runs.

mod common;

use common::http::HttpClient;
use common::{Server, doppel_command};
use doppel_netfault::{LinkModel, LinkState};
use serde_json::{Value, json};
use std::process::{Output, Stdio};
use std::time::Duration;

const DEVICES: u32 = 50;
const SEED: u64 = 7;
const RUN: Duration = Duration::from_secs(4);
const MODEL: LinkModel = LinkModel {
    disconnect_rate: 0.5,
    reconnect_rate: 2.0,
};

/// How long the simulator may take beyond its run: start-up, the last DISCONNECTs.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn thing(index: u32) -> String {
    format!("sim-{index:06}")
}

/// Devices whose link (seed + index, as the simulator draws it) stays Up through the second half
/// of the run: whenever a desired change or a command reaches the hub, each of them is
/// connected by then or reconnects and subscribes (which resends both), with time to answer.
fn devices_up_at_the_end() -> Vec<u32> {
    let half = RUN / 2;
    (0..DEVICES)
        .filter(|&index| {
            let mut at = Duration::ZERO;
            for (state, length) in MODEL.schedule(SEED + u64::from(index)) {
                let end = at.saturating_add(length);
                if state == LinkState::Down && end > half && at < RUN {
                    return false;
                }
                if end >= RUN {
                    return true;
                }
                at = end;
            }
            false
        })
        .collect()
}

async fn finish(child: std::process::Child) -> Output {
    let waited = tokio::time::timeout(
        EXIT_TIMEOUT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("doppel sim ends after its run");
    waited.expect("the waiting thread").expect("doppel sim ran")
}

#[tokio::test]
async fn simulated_devices_report_apply_deltas_and_acknowledge_commands() {
    let server = Server::start_with(&["--mqtt-allow-anonymous", "true"]);
    let http = HttpClient::new(&server);
    let dir = tempfile::tempdir().expect("temporary folder");
    let report_path = dir.path().join("report.json");
    let chosen = devices_up_at_the_end();
    assert!(
        chosen.len() >= 4,
        "seed {SEED} leaves {chosen:?} up at the end"
    );
    let (patched, commanded) = (&chosen[..3], chosen[3]);

    let child = doppel_command()
        .args(["sim", "--hub", &server.mqtt.to_string()])
        .args([
            "--devices",
            &DEVICES.to_string(),
            "--seed",
            &SEED.to_string(),
        ])
        .args([
            "--interval",
            "200ms",
            "--jitter",
            "50ms",
            "--duration",
            "4s",
        ])
        .args(["--disconnect-rate", "0.5", "--reconnect-rate", "2"])
        .arg("--report-json")
        .arg(&report_path)
        .arg("--no-progress")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn doppel sim");

    // While it runs: new desired state for some twins and a command for another. Both may
    // reach the hub before or after the device first connects; either way it must act on them.
    for (n, &index) in patched.iter().enumerate() {
        let desired = json!({"setpoint": 20.5 + n as f64, "mode": "boost"});
        http.patch_desired(&thing(index), &desired).await;
    }
    let (_, command) = http
        .queue_command(&thing(commanded), &json!({"type": "reboot"}))
        .await;
    let command_id = command["id"].as_str().expect("a command id").to_owned();

    let output = finish(child).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "doppel sim failed: {stderr}");
    assert!(
        stdout.starts_with(&format!(
            "doppel sim: {DEVICES} devices against {}",
            server.mqtt
        )),
        "{stdout}"
    );
    for row in [
        "reports acknowledged",
        "deltas applied",
        "latency p50/p99/p99.9",
    ] {
        assert!(stdout.contains(row), "{row:?} missing from {stdout}");
    }

    let report: Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("the JSON report"))
            .expect("JSON");
    let totals = &report["totals"];
    let count = |key: &str| {
        totals[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {totals}"))
    };
    assert_eq!(count("devices"), u64::from(DEVICES));
    assert!(count("connects") >= u64::from(DEVICES), "{totals}");
    // A reconnect can be refused while the hub still ends the device's previous session (it
    // dropped without a word), or time out on a loaded machine; the device retries. Rare, not
    // never.
    assert!(
        count("connect_failures") * 10 <= count("connects"),
        "{totals}"
    );
    assert!(count("reports_acknowledged") > 0, "{totals}");
    assert!(
        count("disconnects") > 0,
        "λ = 0.5/s over 4 s cuts some of 50 links"
    );
    assert!(count("deltas_applied") >= 3, "{totals}");
    assert!(count("commands_acknowledged") >= 1, "{totals}");
    assert!(report["latency_ms"]["count"].as_u64() > Some(0));
    assert!(report["latency_ms"]["p50"].as_f64() > Some(0.0));
    assert_eq!(report["partitioned"]["expected_fraction"], 0.2);
    let fraction = report["partitioned"]["fraction"]
        .as_f64()
        .expect("a fraction");
    assert!(fraction > 0.0 && fraction < 0.6, "partitioned {fraction}");
    let devices = report["devices"].as_array().expect("per device");
    assert_eq!(devices.len(), 50);
    for &index in patched {
        assert!(devices[index as usize]["deltas_applied"].as_u64() >= Some(1));
    }
    assert!(devices[commanded as usize]["commands_acknowledged"].as_u64() >= Some(1));

    // The hub: every device's twin holds its reports, and the patched ones report what was
    // desired, so their delta is empty.
    for index in 0..DEVICES {
        let twin = http.twin(&thing(index)).await;
        let reported = &twin["reported"]["state"];
        assert!(
            reported["temperature"].is_number(),
            "{}: {twin}",
            thing(index)
        );
        assert_eq!(reported["firmware"], "2.4.1");
    }
    for (n, &index) in patched.iter().enumerate() {
        let twin = http.twin(&thing(index)).await;
        let reported = &twin["reported"]["state"];
        assert_eq!(reported["setpoint"], json!(20.5 + n as f64), "{twin}");
        assert_eq!(reported["mode"], "boost", "{twin}");
        assert_eq!(twin["delta"], json!({}), "{twin}");
    }
    let command = http.command(&thing(commanded), &command_id).await;
    assert_eq!(command["status"], "ACKNOWLEDGED", "{command}");
    assert_eq!(command["result"], "SUCCEEDED", "{command}");
}

#[tokio::test]
async fn an_unreachable_hub_or_a_bad_flag_fails_at_once_with_one_line() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--hub", &free.to_string(), "--devices", "5"],
            "doppel: cannot reach the hub at",
        ),
        (
            &["--devices", "5", "--interval", "1s", "--jitter", "2s"],
            "doppel: jitter (2s) must not exceed the interval (1s)",
        ),
        (
            &["--devices", "5", "--disconnect-rate=-1"],
            "doppel: link model: disconnect_rate must be",
        ),
    ];
    for (args, expected) in cases {
        let child = doppel_command()
            .arg("sim")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn doppel sim");
        let output = finish(child).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "no table for a run that never started"
        );
    }
}

/// Some devices' credentials exist and some do not: the run goes on with the devices the hub
/// lets in, the report says why the others failed, and `--fail-on-connect-errors` turns that
/// into a failed exit after the report.
#[tokio::test]
async fn devices_the_hub_refuses_are_reported_by_reason_and_fail_the_run_when_asked() {
    const PASSWORD: &str = "sim-devices-share-this-password-0123456789";
    let server = Server::start();
    let http = HttpClient::new(&server);
    // Devices 0 and 1 of 3 have a credential; sim-000002 has none.
    for index in 0..2 {
        let (status, body) = http
            .post(
                &format!("/v1/tenants/default/devices/{}/credentials", thing(index)),
                &json!({"password": PASSWORD}),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    for fail_on_connect_errors in [false, true] {
        let report_path = dir
            .path()
            .join(format!("report-{fail_on_connect_errors}.json"));
        let mut command = doppel_command();
        command
            .args(["sim", "--hub", &server.mqtt.to_string()])
            .args(["--devices", "3", "--duration", "2s", "--interval", "500ms"])
            .args(["--password", PASSWORD, "--no-progress"])
            .arg("--report-json")
            .arg(&report_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if fail_on_connect_errors {
            command.arg("--fail-on-connect-errors");
        }
        let output = finish(command.spawn().expect("spawn doppel sim")).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report: Value =
            serde_json::from_slice(&std::fs::read(&report_path).expect("the JSON report"))
                .expect("JSON");
        let refused = report["connect_failures_by_kind"]["bad user name or password"]
            .as_u64()
            .unwrap_or(0);
        assert!(refused >= 1, "{report}");
        assert_eq!(
            report["totals"]["connected_at_end"], 2,
            "the devices with credentials ran: {report}"
        );
        assert!(
            stdout.contains(&format!("{refused} bad user name or password")),
            "{stdout}"
        );
        if fail_on_connect_errors {
            assert!(!output.status.success(), "{stdout}");
            assert!(
                stderr.starts_with("doppel: ")
                    && stderr.contains("bad user name or password")
                    && stderr.contains("--fail-on-connect-errors"),
                "{stderr}"
            );
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        } else {
            assert!(output.status.success(), "{stderr}");
        }
    }
}
