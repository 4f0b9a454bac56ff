//! A data folder written by an earlier release opens in this one: its twins, their history and
//! its tombstones read as they were written, and the records this release writes over them
//! read back after a restart.

mod common;

use common::Server;
use common::http::HttpClient;
use common::mqtt::device;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const ANONYMOUS: &[&str] = &["--mqtt-allow-anonymous", "true"];

/// Unpacks `tests/fixtures/{name}` into `into`.
fn unpack(name: &str, into: &Path) {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(into)
        .status()
        .expect("run tar");
    assert!(
        status.success(),
        "tar could not unpack {}",
        archive.display()
    );
}

fn stamps(section: &Value) -> Value {
    section["metadata"].clone()
}

/// The twins of `store-v1.tar.gz` (see tests/fixtures/README.md), in the first record format:
/// each leaf's stamp is the time of the write that last touched it, which the compact format
/// leaves out for the leaves of a section's latest write and must put back.
#[tokio::test(flavor = "multi_thread")]
async fn a_data_folder_of_the_first_record_format_opens_whole_and_takes_new_writes() {
    let data = tempfile::tempdir().expect("temporary data folder");
    unpack("store-v1.tar.gz", data.path());
    let mut server = Server::start_in(data.path(), ANONYMOUS);
    let http = HttpClient::new(&server);

    let (status, pump) = http.get("/v1/tenants/default/twins/pump-1").await;
    assert_eq!(status, 200, "{pump}");
    assert_eq!(
        (&pump["version"], &pump["shadow_version"]),
        (&json!(6), &json!(3))
    );
    assert_eq!(
        pump["reported"]["state"],
        json!({"battery": {"charging": false, "level": 79}, "errors": [], "mode": "eco", "temperature": 21.25})
    );
    let (first, second, desired) = (
        1_796_670_103_819_i64,
        1_796_670_104_126_i64,
        1_796_670_104_449_i64,
    );
    assert_eq!(
        stamps(&pump["reported"]),
        json!({
            "battery": {"charging": {"timestamp": first}, "level": {"timestamp": second}},
            "errors": {"timestamp": first},
            "mode": {"timestamp": first},
            "temperature": {"timestamp": second},
        })
    );
    assert_eq!(
        pump["desired"]["state"],
        json!({"mode": "boost", "target": {"temperature": 22}})
    );
    assert_eq!(
        stamps(&pump["desired"]),
        json!({"mode": {"timestamp": desired}, "target": {"temperature": {"timestamp": desired}}})
    );
    assert_eq!(
        pump["delta"],
        json!({"mode": "boost", "target": {"temperature": 22}})
    );
    let (_, history) = http
        .get("/v1/tenants/default/twins/pump-1/history?limit=100")
        .await;
    let versions: Vec<&Value> = history["items"]
        .as_array()
        .expect("history items")
        .iter()
        .map(|entry| &entry["version"])
        .collect();
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5, 6]
            .map(|v| json!(v))
            .iter()
            .collect::<Vec<_>>()
    );
    let (status, _) = http.get("/v1/tenants/default/twins/gone-1").await;
    assert_eq!(status, 404, "the deleted twin stays deleted");

    // New writes over the old records: a partial report, and the deleted twin made again, whose
    // shadow version goes on from where its deletion left it.
    let mut pump_device = device(&server, "pump-1").await;
    let accepted = pump_device
        .update_accepted(
            "pump-1",
            r#"{"state": {"reported": {"battery": {"charging": true}}}}"#,
        )
        .await;
    assert_eq!(accepted["version"], 4);
    let mut gone = device(&server, "gone-1").await;
    let remade = gone
        .update_accepted("gone-1", r#"{"state": {"reported": {"x": 2}}}"#)
        .await;
    assert_eq!(remade["version"], 3, "{remade}");
    drop((pump_device, gone));
    let (_, written) = http.get("/v1/tenants/default/twins/pump-1").await;
    let charged = &written["reported"]["metadata"]["battery"]["charging"]["timestamp"];
    assert!(
        charged.as_i64().expect("a stamp") > second,
        "the new write has a newer stamp: {written}"
    );
    assert_eq!(
        written["reported"]["metadata"]["battery"]["level"],
        json!({"timestamp": second}),
        "a leaf the new write did not touch keeps its old stamp"
    );
    let (_, remade_twin) = http.get("/v1/tenants/default/twins/gone-1").await;

    assert!(server.stop(), "the server stops cleanly");
    let server = Server::start_in(data.path(), ANONYMOUS);
    let http = HttpClient::new(&server);
    let (_, reread) = http.get("/v1/tenants/default/twins/pump-1").await;
    // Not the document version: the devices' disconnects may be written after the read above.
    for part in ["reported", "desired", "shadow_version", "delta"] {
        assert_eq!(reread[part], written[part], "{part} after a restart");
    }
    let (_, reread) = http.get("/v1/tenants/default/twins/gone-1").await;
    assert_eq!(reread["reported"], remade_twin["reported"]);
}
