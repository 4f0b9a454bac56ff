//! The HTTP API end to end: the real binary on port 0, real HTTP.

mod common;

use common::Server;
use common::api::{Api, assert_problem};
use common::http::Reply;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The convenience calls of these tests on top of the shared [`Api`].
impl Api {
    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], None).await
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> Reply {
        self.call(method, path, &[], Some(body.to_string())).await
    }
}

const TWIN: &str = "/v1/tenants/default/twins/pump-7";

#[tokio::test]
async fn desired_and_reported_produce_versions_and_a_delta() {
    let api = Api::start();
    assert_problem(
        &api.get(TWIN).await,
        StatusCode::NOT_FOUND,
        "twin_not_found",
    );

    let created = api
        .send(
            Method::PATCH,
            &format!("{TWIN}/desired"),
            json!({"light": {"on": true, "level": 5}, "mode": "eco"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    assert_eq!(created.body["version"], json!(1));
    assert_eq!(created.body["desired"]["version"], json!(1));
    assert_eq!(
        created.body["delta"],
        json!({"light": {"on": true, "level": 5}, "mode": "eco"})
    );
    assert!(created.body["desired"]["metadata"]["light"]["level"]["timestamp"].is_i64());

    let report = json!({"state": {"light": {"on": true, "level": 3}, "mode": "eco", "temp": 21.5}, "version": 10});
    let reported = api
        .send(Method::PATCH, &format!("{TWIN}/reported"), report)
        .await;
    assert_eq!(reported.status, StatusCode::OK);
    assert_eq!(reported.body["applied"], json!(true));
    assert!(reported.body.get("reason").is_none());
    let twin = &reported.body["twin"];
    assert_eq!(
        (twin["version"].clone(), twin["reported"]["version"].clone()),
        (json!(2), json!(10))
    );
    assert_eq!(
        twin["delta"],
        json!({"light": {"level": 5}}),
        "nested paths kept, equal leaves and reported-only keys left out"
    );
    assert!(
        twin["connection"]["last_activity_at"].is_string(),
        "a report counts as activity"
    );

    let fetched = api.get(TWIN).await;
    assert_eq!(fetched.etag.as_deref(), Some("\"2\""));
    assert_eq!(fetched.body["reported"]["state"]["temp"], json!(21.5));
    assert_eq!(fetched.body["connection"]["status"], json!("UNKNOWN"));
    assert_eq!(
        api.get(&format!("{TWIN}/delta")).await.body,
        json!({"version": 2, "delta": {"light": {"level": 5}}})
    );

    // null deletes a desired property, and with it its part of the delta.
    let patched = api
        .send(
            Method::PATCH,
            &format!("{TWIN}/desired"),
            json!({"light": {"level": null}}),
        )
        .await;
    assert_eq!(
        patched.body["desired"]["state"],
        json!({"light": {"on": true}, "mode": "eco"})
    );
    assert_eq!(patched.body["delta"], json!({}));
    assert_eq!(
        patched.body["desired"]["metadata"],
        json!({"light": {"on": created.body["desired"]["metadata"]["light"]["on"]}, "mode": created.body["desired"]["metadata"]["mode"]})
    );
}

#[tokio::test]
async fn stale_reports_are_ignored_and_say_so() {
    let api = Api::start();
    let path = format!("{TWIN}/reported");
    api.send(
        Method::PATCH,
        &path,
        json!({"state": {"t": 1}, "version": 5}),
    )
    .await;
    for stale in [5, 4] {
        let reply = api
            .send(
                Method::PATCH,
                &path,
                json!({"state": {"t": 2}, "version": stale}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            (reply.body["applied"].clone(), reply.body["reason"].clone()),
            (json!(false), json!("stale"))
        );
        assert_eq!(reply.body["twin"]["reported"]["state"]["t"], json!(1));
    }
    let twin = api.get(TWIN).await.body;
    assert_eq!(
        (
            twin["version"].clone(),
            twin["reported"]["state"]["t"].clone()
        ),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn put_replaces_desired_and_if_match_guards_writes() {
    let api = Api::start();
    let path = format!("{TWIN}/desired");
    api.send(Method::PATCH, &path, json!({"a": 1, "b": {"c": 2}}))
        .await;
    let replaced = api.send(Method::PUT, &path, json!({"z": true})).await;
    assert_eq!(replaced.body["desired"]["state"], json!({"z": true}));
    assert_eq!(replaced.body["desired"]["version"], json!(2));

    let mismatch = api
        .call(
            Method::PATCH,
            &path,
            &[("if-match", "\"1\"")],
            Some(json!({"a": 9}).to_string()),
        )
        .await;
    assert_problem(
        &mismatch,
        StatusCode::PRECONDITION_FAILED,
        "version_mismatch",
    );
    assert_eq!(
        (
            mismatch.body["current_version"].clone(),
            mismatch.body["expected_version"].clone()
        ),
        (json!(2), json!(1))
    );
    let matched = api
        .call(
            Method::PATCH,
            &path,
            &[("if-match", "\"2\"")],
            Some(json!({"a": 9}).to_string()),
        )
        .await;
    assert_eq!(
        (matched.status, matched.etag.as_deref()),
        (StatusCode::OK, Some("\"3\""))
    );
    let garbled = api
        .call(
            Method::PATCH,
            &path,
            &[("if-match", "three")],
            Some(json!({"a": 10}).to_string()),
        )
        .await;
    assert_problem(&garbled, StatusCode::BAD_REQUEST, "invalid_header");
    let absent = api
        .call(
            Method::PATCH,
            "/v1/tenants/default/twins/other/desired",
            &[("if-match", "\"1\"")],
            Some("{}".into()),
        )
        .await;
    assert_problem(&absent, StatusCode::PRECONDITION_FAILED, "version_mismatch");
    assert_problem(
        &api.get("/v1/tenants/default/twins/other").await,
        StatusCode::NOT_FOUND,
        "twin_not_found",
    );
    assert_eq!(
        api.get(TWIN).await.body["desired"]["state"],
        json!({"z": true, "a": 9})
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let api = Api::start_with(&[
        "--limits-max-depth",
        "3",
        "--limits-max-document-bytes",
        "1024",
    ]);
    let path = format!("{TWIN}/desired");
    api.send(Method::PATCH, &path, json!({"keep": 1})).await;

    let invalid = api
        .call(Method::PATCH, &path, &[], Some("{\n  \"a\": @\n}".into()))
        .await;
    assert_problem(&invalid, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(
        (invalid.body["line"].clone(), invalid.body["column"].clone()),
        (json!(2), json!(8))
    );
    assert_problem(
        &api.send(Method::PATCH, &path, json!([1, 2])).await,
        StatusCode::BAD_REQUEST,
        "not_an_object",
    );
    assert_problem(
        &api.send(Method::PATCH, &path, json!("text")).await,
        StatusCode::BAD_REQUEST,
        "not_an_object",
    );
    let deep = api
        .send(Method::PATCH, &path, json!({"a": {"b": {"c": {"d": 1}}}}))
        .await;
    assert_problem(&deep, StatusCode::BAD_REQUEST, "too_deep");
    assert_eq!(deep.body["limit"], json!(3));
    let pathological = format!("{{\"a\": {}1{}}}", "[".repeat(300), "]".repeat(300));
    assert_problem(
        &api.call(Method::PATCH, &path, &[], Some(pathological))
            .await,
        StatusCode::BAD_REQUEST,
        "too_deep",
    );
    let big_body = api
        .send(Method::PATCH, &path, json!({"blob": "x".repeat(2000)}))
        .await;
    assert_problem(
        &big_body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "document_too_large",
    );
    // Each patch fits, but together they would outgrow the limit.
    assert_eq!(
        api.send(Method::PATCH, &path, json!({"p1": "x".repeat(600)}))
            .await
            .status,
        StatusCode::OK
    );
    assert_problem(
        &api.send(Method::PATCH, &path, json!({"p2": "x".repeat(600)}))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "document_too_large",
    );
    let report_without_state = api
        .send(
            Method::PATCH,
            &format!("{TWIN}/reported"),
            json!({"version": 3}),
        )
        .await;
    assert_problem(
        &report_without_state,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );
    let report_not_object = api
        .send(
            Method::PATCH,
            &format!("{TWIN}/reported"),
            json!({"state": 5}),
        )
        .await;
    assert_problem(&report_not_object, StatusCode::BAD_REQUEST, "not_an_object");
    assert_problem(
        &api.send(
            Method::PATCH,
            "/v1/tenants/default/twins/bad%20id/desired",
            json!({}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    assert_problem(
        &api.get(&format!("/v1/tenants/{}/twins/x", "t".repeat(129)))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    assert_problem(
        &api.get("/v2/nothing").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    );
    assert_problem(
        &api.send(Method::POST, TWIN, json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_problem(
        &api.get(&format!("{TWIN}?at=yesterday")).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_problem(
        &api.get(&format!("{TWIN}?colour=red")).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );

    let twin = api.get(TWIN).await.body;
    assert_eq!(
        twin["version"],
        json!(2),
        "only the two valid writes changed the twin: {twin}"
    );
    assert_eq!(twin["desired"]["state"]["keep"], json!(1));
    let history = api.get(&format!("{TWIN}/history")).await.body;
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn meta_fields_are_written_by_applications() {
    let api = Api::start();
    let meta = json!({"tags": {"site": "berlin", "row": "3"}, "device_type": "pump", "firmware_version": "1.2.0", "capabilities": ["ota", "reboot"]});
    let reply = api.send(Method::PATCH, TWIN, meta).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["tags"], json!({"site": "berlin", "row": "3"}));
    assert_eq!(reply.body["capabilities"], json!(["ota", "reboot"]));
    let reply = api
        .send(
            Method::PATCH,
            TWIN,
            json!({"tags": {"row": null}, "firmware_version": null}),
        )
        .await;
    assert_eq!(
        (
            reply.body["tags"].clone(),
            reply.body["firmware_version"].clone()
        ),
        (json!({"site": "berlin"}), Value::Null)
    );
    assert_eq!(reply.body["device_type"], json!("pump"));
    assert_problem(
        &api.send(Method::PATCH, TWIN, json!({"colour": "red"}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );
    assert_problem(
        &api.send(Method::PATCH, TWIN, json!({"tags": {"site": 7}}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );
    let history = api.get(&format!("{TWIN}/history?kind=META")).await.body;
    assert_eq!(
        history["items"][1]["state"]["tags"],
        json!({"site": "berlin"})
    );
    assert_eq!(history["items"][1]["changed_by"], json!("token:admin"));
}

#[tokio::test]
async fn delete_hides_the_twin_and_versions_continue() {
    let api = Api::start();
    api.send(Method::PATCH, &format!("{TWIN}/desired"), json!({"a": 1}))
        .await;
    let mismatch = api
        .call(Method::DELETE, TWIN, &[("if-match", "\"7\"")], None)
        .await;
    assert_problem(
        &mismatch,
        StatusCode::PRECONDITION_FAILED,
        "version_mismatch",
    );
    let deleted = api
        .call(
            Method::DELETE,
            TWIN,
            &[("doppel-change-reason", "decommissioned")],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_problem(
        &api.get(TWIN).await,
        StatusCode::NOT_FOUND,
        "twin_not_found",
    );
    assert_problem(
        &api.call(Method::DELETE, TWIN, &[], None).await,
        StatusCode::NOT_FOUND,
        "twin_not_found",
    );
    assert!(
        api.get("/v1/tenants/default/twins").await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let history = api.get(&format!("{TWIN}/history")).await.body;
    let last = &history["items"][1];
    assert_eq!(
        (
            last["kind"].clone(),
            last["version"].clone(),
            last["change_reason"].clone()
        ),
        (json!("DELETED"), json!(2), json!("decommissioned"))
    );

    let reborn = api
        .send(Method::PATCH, &format!("{TWIN}/desired"), json!({"b": 2}))
        .await;
    assert_eq!(
        reborn.body["version"],
        json!(3),
        "versions never go backwards, not even across a delete"
    );
    assert_eq!(reborn.body["desired"]["state"], json!({"b": 2}));
}

#[tokio::test]
async fn history_filters_pages_and_time_travel() {
    let api = Api::start();
    let desired = format!("{TWIN}/desired");
    for (i, body) in [
        json!({"mode": "eco"}),
        json!({"mode": "boost"}),
        json!({"mode": "off"}),
    ]
    .into_iter()
    .enumerate()
    {
        api.send(Method::PATCH, &desired, body).await;
        api.send(
            Method::PATCH,
            &format!("{TWIN}/reported"),
            json!({"state": {"seen": i}}),
        )
        .await;
        // Distinct instants, so that each state has its own moment to travel back to.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let all = api.get(&format!("{TWIN}/history")).await.body;
    let items = all["items"].as_array().unwrap();
    let versions: Vec<u64> = items
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(items[2]["state"], json!({"mode": "boost"}));
    assert_eq!(
        (items[1]["changed_by"].clone(), items[1]["kind"].clone()),
        (json!("pump-7"), json!("REPORTED"))
    );
    assert!(all["next_cursor"].is_null());

    let desired_only = api.get(&format!("{TWIN}/history?kind=DESIRED")).await.body;
    let modes: Vec<&Value> = desired_only["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["state"]["mode"])
        .collect();
    assert_eq!(modes, [&json!("eco"), &json!("boost"), &json!("off")]);

    let first_page = api.get(&format!("{TWIN}/history?limit=4")).await.body;
    assert_eq!(first_page["items"].as_array().unwrap().len(), 4);
    let cursor = first_page["next_cursor"].as_str().unwrap().to_owned();
    let second_page = api
        .get(&format!("{TWIN}/history?limit=4&cursor={cursor}"))
        .await
        .body;
    let rest: Vec<u64> = second_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(rest, [5, 6]);

    let boost_at = items[3]["recorded_at"].as_str().unwrap();
    let window = api
        .get(&format!(
            "{TWIN}/history?from={}&to={}",
            items[2]["recorded_at"].as_str().unwrap(),
            boost_at
        ))
        .await
        .body;
    let window: Vec<u64> = window["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(window, [3, 4]);

    let then = api.get(&format!("{TWIN}?at={boost_at}")).await;
    assert_eq!(then.status, StatusCode::OK);
    assert_eq!(then.etag.as_deref(), Some("\"4\""));
    assert_eq!(then.body["desired"]["state"], json!({"mode": "boost"}));
    assert_eq!(then.body["reported"]["state"], json!({"seen": 1}));
    // Before its first version the twin did not exist yet: said so, with when it began, not
    // as if there were no such twin.
    let before = api.get(&format!("{TWIN}?at=2000-01-01T00:00:00Z")).await;
    assert_problem(&before, StatusCode::NOT_FOUND, "twin_not_yet_created");
    let created_at = items[0]["recorded_at"].as_str().unwrap();
    assert_eq!(before.body["created_at"], created_at);
    assert_eq!(
        before.body["detail"],
        format!(
            "the twin did not exist yet at 2000-01-01T00:00:00.000Z: its first version was recorded at {created_at}"
        )
    );
    assert_problem(
        &api.get("/v1/tenants/default/twins/none?at=2000-01-01T00:00:00Z")
            .await,
        StatusCode::NOT_FOUND,
        "twin_not_found",
    );
    assert_problem(
        &api.get("/v1/tenants/default/twins/none/history").await,
        StatusCode::NOT_FOUND,
        "twin_not_found",
    );
    assert_problem(
        &api.get(&format!("{TWIN}/history?kind=SOMETIMES")).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_problem(
        &api.get(&format!("{TWIN}/history?limit=0")).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
}

#[tokio::test]
async fn listing_pages_through_one_tenant() {
    let api = Api::start();
    for device in ["d3", "d1", "d2"] {
        api.send(
            Method::PATCH,
            &format!("/v1/tenants/acme/twins/{device}/desired"),
            json!({"on": true}),
        )
        .await;
    }
    api.send(
        Method::PATCH,
        "/v1/tenants/other/twins/d0/desired",
        json!({}),
    )
    .await;
    let first = api.get("/v1/tenants/acme/twins?limit=2").await.body;
    let ids = |page: &Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["device_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ["d1", "d2"]);
    assert_eq!(first["next_cursor"], json!("d2"));
    let second = api
        .get("/v1/tenants/acme/twins?limit=2&cursor=d2")
        .await
        .body;
    assert_eq!(ids(&second), ["d3"]);
    assert!(second["next_cursor"].is_null());
    assert_eq!(second["items"][0]["delta"], json!({"on": true}));
    assert_eq!(ids(&api.get("/v1/tenants/other/twins").await.body), ["d0"]);
    assert_problem(
        &api.get("/v1/tenants/acme/twins?limit=5000").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
}

#[tokio::test]
async fn concurrent_writes_to_one_twin_each_get_their_own_version() {
    let api = std::sync::Arc::new(Api::start());
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..40 {
        let api = api.clone();
        writers.spawn(async move {
            api.send(
                Method::PATCH,
                &format!("{TWIN}/desired"),
                json!({ format!("k{i}"): i }),
            )
            .await
        });
    }
    let mut etags = Vec::new();
    while let Some(reply) = writers.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        etags.push(
            reply
                .etag
                .unwrap()
                .trim_matches('"')
                .parse::<u64>()
                .unwrap(),
        );
    }
    etags.sort_unstable();
    assert_eq!(etags, (1..=40).collect::<Vec<u64>>());
    let twin = api.get(TWIN).await.body;
    assert_eq!(twin["desired"]["state"].as_object().unwrap().len(), 40);
    assert_eq!(twin["desired"]["version"], json!(40));
}

/// `GET /v1/tenants` with `token`: the status and, on success, `(tenant, twins, credentials,
/// tokens)` per item.
async fn tenants(api: &Api, token: &str) -> (StatusCode, Vec<(String, u64, u64, u64)>, Value) {
    let response = common::http_client_with_token(token)
        .get(api.server.url("/v1/tenants"))
        .send()
        .await
        .expect("GET /v1/tenants");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    let items = body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let count = |name: &str| item[name].as_u64().expect("a count");
                    (
                        item["tenant"].as_str().expect("tenant").to_owned(),
                        count("twins"),
                        count("credentials"),
                        count("tokens"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (status, items, body)
}

#[tokio::test]
async fn tenants_are_listed_with_what_they_hold_and_a_tenants_token_sees_its_own() {
    let api = Api::start();
    let admin = common::ADMIN_TOKEN;
    let (status, items, _) = tenants(&api, admin).await;
    assert_eq!(
        (status, items),
        (StatusCode::OK, vec![]),
        "the first admin token is every tenant's, so it names none"
    );
    for twin in [
        "/v1/tenants/default/twins/pump-1",
        "/v1/tenants/default/twins/pump-1/shadows/config",
        "/v1/tenants/acme/twins/fan-1",
    ] {
        let reply = api
            .send(
                Method::PATCH,
                &format!("{twin}/desired"),
                json!({"on": true}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let credential = api
        .call(
            Method::POST,
            "/v1/tenants/beta/devices/d-1/credentials",
            &[],
            None,
        )
        .await;
    assert_eq!(
        credential.status,
        StatusCode::CREATED,
        "{}",
        credential.body
    );
    let (_, gamma) = common::tokens::token(&api.server, "gamma-ops", "operator", "gamma").await;
    let (_, acme_writer) =
        common::tokens::token(&api.server, "acme-app", "app-write", "acme").await;
    let (status, items, body) = tenants(&api, admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        items,
        [
            ("acme".to_owned(), 1, 0, 1),
            ("beta".to_owned(), 0, 1, 0),
            ("default".to_owned(), 2, 0, 0),
            ("gamma".to_owned(), 0, 0, 1),
        ],
        "a named shadow counts as a twin of its tenant"
    );

    // A tenant's operator sees its own tenant and nothing of the others.
    let (status, items, body) = tenants(&api, &gamma).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(items, [("gamma".to_owned(), 0, 0, 1)]);
    let (status, _, body) = tenants(&api, &acme_writer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        (&body["code"], &body["required_role"]),
        (&json!("forbidden"), &json!("operator"))
    );

    // A deleted twin no longer counts; what else the tenant holds keeps it listed.
    let deleted = api
        .call(Method::DELETE, "/v1/tenants/acme/twins/fan-1", &[], None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let (_, items, _) = tenants(&api, admin).await;
    assert_eq!(items[0], ("acme".to_owned(), 0, 0, 1));
}

#[tokio::test]
async fn a_graceful_restart_keeps_everything_and_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::over(Server::start_in(dir.path(), &[]));
    assert_eq!(api.get("/healthz").await.body, json!({"status": "ok"}));
    assert_eq!(api.get("/readyz").await.status, StatusCode::OK);
    api.send(Method::PATCH, &format!("{TWIN}/desired"), json!({"a": 1}))
        .await;
    api.send(Method::PATCH, TWIN, json!({"tags": {"site": "berlin"}}))
        .await;
    // A deleted twin leaves a tombstone in memory, which readiness does not count as a twin.
    let gone = "/v1/tenants/default/twins/gone-1";
    api.send(Method::PATCH, &format!("{gone}/desired"), json!({"a": 1}))
        .await;
    let deleted = api.call(Method::DELETE, gone, &[], None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(api.get("/readyz").await.body["twins"], json!(1));
    let mut api = api;
    assert!(api.server.stop(), "SIGTERM stops the server cleanly");

    let api = Api::over(Server::start_in(dir.path(), &[]));
    let twin = api.get(TWIN).await;
    assert_eq!(twin.etag.as_deref(), Some("\"2\""));
    assert_eq!(
        (
            twin.body["desired"]["state"]["a"].clone(),
            twin.body["tags"]["site"].clone()
        ),
        (json!(1), json!("berlin"))
    );
    assert_eq!(api.get("/readyz").await.body["twins"], json!(1));
}

impl Api {
    fn start_with(args: &[&str]) -> Api {
        Self::over(Server::start_with(args))
    }
}

#[tokio::test]
async fn history_older_than_the_retention_is_dropped() {
    // One-second buckets kept for two seconds: the first entry's bucket expires within about
    // three seconds, while the twin itself stays.
    let api = Api::start_with(&["--history-bucket", "1s", "--history-retention", "2s"]);
    api.send(Method::PATCH, &format!("{TWIN}/desired"), json!({"a": 1}))
        .await;
    let history_path = format!("{TWIN}/history");
    let first = api.get(&history_path).await.body;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    // Real time has to pass here; poll at most 10 seconds.
    common::eventually(
        "the expired entry being dropped",
        std::time::Duration::from_secs(10),
        || async {
            api.get(&history_path).await.body["items"]
                .as_array()
                .expect("items")
                .is_empty()
        },
    )
    .await;
    // With version 1 gone, nothing says when the twin began: no claim that it did not exist.
    assert_problem(
        &api.get(&format!("{TWIN}?at=2000-01-01T00:00:00Z")).await,
        StatusCode::NOT_FOUND,
        "twin_not_found",
    );
    let twin = api.get(TWIN).await;
    assert_eq!(
        (twin.status, twin.body["desired"]["state"].clone()),
        (StatusCode::OK, json!({"a": 1}))
    );
    let later = api
        .send(Method::PATCH, &format!("{TWIN}/desired"), json!({"a": 2}))
        .await;
    assert_eq!(later.body["version"], json!(2));
    let history = api.get(&history_path).await.body;
    assert_eq!(history["items"][0]["version"], json!(2));
}
