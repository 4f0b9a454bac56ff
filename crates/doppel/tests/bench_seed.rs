//! `doppel bench seed`: the benchmark scripts' store filler, checked against a real hub.

mod common;

use common::Server;
use common::http::HttpClient;
use reqwest::StatusCode;

#[tokio::test]
async fn seeded_twins_load_into_a_hub_with_their_state_and_delta() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = dir.path().join("store");
    assert!(common::seed_store(&store, 250).starts_with("seeded 250 twins"));

    // A second seed into the same folder is refused with one line and changes nothing.
    let again = common::doppel_command()
        .args(["bench", "seed", "--twins", "5", "--data-dir"])
        .arg(&store)
        .output()
        .expect("run doppel bench seed");
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");

    let hub = Server::start_in(&store, &[]);
    let http = HttpClient::new(&hub);
    let (status, count) = http.get("/v1/tenants/default/twins/count").await;
    assert_eq!(status, StatusCode::OK, "{count}");
    assert_eq!(count["count"], 250, "{count}");
    let twin = http.twin("sensor-0000249").await;
    let reported = serde_json::to_string(&twin["reported"]["state"]).expect("json");
    assert!(
        (250..400).contains(&reported.len()),
        "a ~300-byte report: {reported}"
    );
    assert_eq!(twin["desired"]["state"]["mode"], "boost");
    assert!(
        twin["delta"]
            .as_object()
            .is_some_and(|delta| !delta.is_empty()),
        "every seeded twin has a delta: {twin}"
    );
}
