//! Applications over MQTT with the API tokens they use over HTTP, against the real binary: the
//! username is the tenant and the password the token. A token that may write acts as the
//! application it names (`changed_by` is `token:{name}` as over HTTP); a wrong, revoked,
//! read-only or foreign token is refused and changes nothing; revoking or expiring a token ends
//! its sessions.

mod common;

use common::http::HttpClient;
use common::mqtt::{Options, connect_with, login};
use common::process::{assert_success, run};
use common::tokens::{last_changed_by, revoke, token};
use common::topic::{self, ShadowOp};
use common::{Server, http_client};
use rumqttc::ConnectReturnCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(10);

/// Logs in as `username` with `password`; the refusal code when refused.
async fn try_login(
    server: &Server,
    username: &str,
    password: &str,
) -> Result<(), ConnectReturnCode> {
    let options = Options {
        credentials: Some((username.to_owned(), password.to_owned())),
        ..Options::default()
    };
    connect_with(server.mqtt, "token-app", options)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_logs_in_with_its_token_and_acts_as_it() {
    let server = Server::start();
    let (_, secret) = token(&server, "dashboard", "app-write", "default").await;
    let mut app = login(server.mqtt, "dashboard-1", "default", &secret).await;
    app.subscribe(&topic::accepted("pump-4", ShadowOp::Update))
        .await;
    let accepted = app
        .update_accepted("pump-4", r#"{"state":{"desired":{"speed":2}}}"#)
        .await;
    assert_eq!(accepted["state"]["desired"]["speed"], 2);
    let twin = HttpClient::new(&server).twin("pump-4").await;
    assert_eq!(twin["desired"]["state"]["speed"], 2);
    assert_eq!(last_changed_by(&server, "pump-4").await, "token:dashboard");

    // The stock client, as an operator's script would use it.
    let mut pub_command = Command::new("mosquitto_pub");
    pub_command
        .args(["-h", &server.mqtt.ip().to_string()])
        .args(["-p", &server.mqtt.port().to_string()])
        .args(["-i", "script-1", "-u", "default", "-P", &secret, "-q", "1"])
        .args(["-t", &topic::request("pump-5", ShadowOp::Update)])
        .args(["-m", r#"{"state":{"desired":{"light":"on"}}}"#]);
    let output = run("mosquitto_pub", pub_command).await;
    assert_success("mosquitto_pub", &output);
    common::eventually("the script's desired change", WAIT, || async {
        let (status, twin) = HttpClient::new(&server)
            .get("/v1/tenants/default/twins/pump-5")
            .await;
        status == 200 && twin["desired"]["state"]["light"] == "on"
    })
    .await;
    assert_eq!(last_changed_by(&server, "pump-5").await, "token:dashboard");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_that_may_not_act_are_refused_and_change_nothing() {
    let server = Server::start();
    let (_, reader) = token(&server, "wallboard", "app-read", "default").await;
    let (_, foreign) = token(&server, "elsewhere", "app-write", "other").await;
    let (revoked_id, revoked) = token(&server, "retired", "app-write", "default").await;
    revoke(&server, &revoked_id).await;
    let (_, writer) = token(&server, "writer", "app-write", "default").await;

    let wrong = "dpt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (what, username, password, expected) in [
        (
            "an unknown token",
            "default",
            wrong,
            ConnectReturnCode::BadUserNamePassword,
        ),
        (
            "a revoked token",
            "default",
            revoked.as_str(),
            ConnectReturnCode::BadUserNamePassword,
        ),
        (
            "a read-only token",
            "default",
            reader.as_str(),
            ConnectReturnCode::NotAuthorized,
        ),
        (
            "another tenant's token",
            "default",
            foreign.as_str(),
            ConnectReturnCode::NotAuthorized,
        ),
        (
            "a username that is no tenant id",
            "bad tenant",
            writer.as_str(),
            ConnectReturnCode::BadUserNamePassword,
        ),
    ] {
        assert_eq!(
            try_login(&server, username, password).await.err(),
            Some(expected),
            "{what}"
        );
    }
    // The token is no password: the credential usernames do not take it.
    assert_eq!(
        try_login(&server, "default/apps/writer", &writer)
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    let (status, twins) = HttpClient::new(&server)
        .get("/v1/tenants/default/twins")
        .await;
    assert_eq!(status, 200);
    assert_eq!(twins["items"], json!([]), "no refused login made a twin");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_or_expiring_a_token_ends_its_sessions() {
    let server = Server::start();
    let (id, secret) = token(&server, "console", "operator", "default").await;
    let (_, kept) = token(&server, "kept", "app-write", "default").await;
    let mut doomed = login(server.mqtt, "console-1", "default", &secret).await;
    let mut other = login(server.mqtt, "kept-1", "default", &kept).await;
    revoke(&server, &id).await;
    doomed.closed().await;
    assert!(other.is_open(), "another token's session goes on");
    assert_eq!(
        try_login(&server, "default", &secret).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );

    let created: Value = http_client()
        .post(server.url("/v1/tokens"))
        .json(&json!({"name": "brief", "roles": ["app-write"], "tenant": "default", "expires_in_seconds": 2}))
        .send()
        .await
        .expect("POST /v1/tokens")
        .json()
        .await
        .expect("JSON");
    let brief = created["token"].as_str().expect("the secret");
    // Two sessions of one token: the one watch on its expiry ends both.
    let mut expiring = login(server.mqtt, "brief-1", "default", brief).await;
    let mut expiring_too = login(server.mqtt, "brief-2", "default", brief).await;
    expiring.closed().await;
    expiring_too.closed().await;
    assert!(other.is_open());
}
