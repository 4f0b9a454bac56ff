//! Fleet queries end to end: `GET /twins?q=`, `GET /twins/count`, their errors, the change
//! stream's `q` filter, and `doppel twin query|count`, against the real binary.

mod common;

use common::Cli;
use common::api::Api;
use common::http::HttpClient;
use reqwest::Method;
use serde_json::{Value, json};

const TWINS: &str = "/v1/tenants/default/twins";

/// Gives `device` its tags and type, and a report of `temp`, on the server at `base`.
async fn twin(base: &str, device: &str, site: &str, device_type: &str, temp: i64) {
    let http = HttpClient::at(base, common::http_client());
    for (path, body) in [
        (
            format!("{TWINS}/{device}"),
            json!({"tags": {"site": site}, "device_type": device_type}),
        ),
        (
            format!("{TWINS}/{device}/reported"),
            json!({"state": {"temp": temp}, "version": temp}),
        ),
    ] {
        let (status, _) = http.patch(&path, &body).await;
        assert!(status.is_success(), "{path}: {status}");
    }
}

async fn devices(api: &Api, query: &str) -> (Vec<String>, Value) {
    let reply = api
        .call(Method::GET, &format!("{TWINS}?{query}"), &[], None)
        .await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    let ids = reply.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|twin| twin["device_id"].as_str().expect("an id").to_owned())
        .collect();
    (ids, reply.body["next_cursor"].clone())
}

fn encoded(query: &str) -> String {
    let mut out = String::new();
    for byte in query.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn queries_find_twins_by_state_tags_and_type_and_see_every_write() {
    let api = Api::start();
    twin(&api.server.base, "b-1", "berlin", "pump", 35).await;
    twin(&api.server.base, "b-2", "berlin", "pump", 20).await;
    twin(&api.server.base, "b-3", "berlin", "fan", 40).await;
    twin(&api.server.base, "p-1", "paris", "pump", 50).await;
    let hot_berlin = encoded("tags.site = 'berlin' AND reported.temp > 30");
    let (found, _) = devices(&api, &format!("q={hot_berlin}")).await;
    assert_eq!(found, ["b-1", "b-3"]);
    // A write acknowledged before the query is seen by it.
    twin(&api.server.base, "b-2", "berlin", "pump", 31).await;
    let (found, _) = devices(&api, &format!("q={hot_berlin}")).await;
    assert_eq!(found, ["b-1", "b-2", "b-3"]);
    let pumps = encoded("device_type IN ('pump') AND NOT tags.site LIKE 'par%'");
    let (found, _) = devices(&api, &format!("q={pumps}")).await;
    assert_eq!(found, ["b-1", "b-2"]);

    let (page, cursor) = devices(
        &api,
        &format!(
            "q={}&order_by={}&limit=2",
            encoded("EXISTS reported.temp"),
            encoded("reported.temp DESC")
        ),
    )
    .await;
    assert_eq!(page, ["p-1", "b-3"]);
    let (rest, end) = devices(
        &api,
        &format!(
            "q={}&order_by={}&limit=2&cursor={}",
            encoded("EXISTS reported.temp"),
            encoded("reported.temp DESC"),
            encoded(cursor.as_str().expect("a cursor"))
        ),
    )
    .await;
    assert_eq!(rest, ["b-1", "b-2"]);
    assert_eq!(end, Value::Null);

    let counted = api
        .call(
            Method::GET,
            &format!(
                "{TWINS}/count?q={}&group_by=tags.site",
                encoded("device_type = 'pump'")
            ),
            &[],
            None,
        )
        .await;
    assert_eq!(counted.status, 200, "{}", counted.body);
    assert_eq!(
        counted.body,
        json!({"count": 3, "groups": [{"value": "berlin", "count": 2}, {"value": "paris", "count": 1}]})
    );
    let all = api
        .call(Method::GET, &format!("{TWINS}/count"), &[], None)
        .await;
    assert_eq!(all.body, json!({"count": 4}));
}

#[tokio::test]
async fn a_malformed_query_points_at_its_position_and_changes_nothing() {
    let api = Api::start();
    for (parameter, value, position) in [
        ("q", "reported.temp >", 15),
        ("q", "colour = 'red'", 0),
        ("order_by", "reported.temp SIDEWAYS", 14),
        ("group_by", "tags", 4),
    ] {
        let path = if parameter == "group_by" {
            format!("{TWINS}/count?group_by={}", encoded(value))
        } else {
            format!("{TWINS}?{parameter}={}", encoded(value))
        };
        let reply = api.call(Method::GET, &path, &[], None).await;
        assert_eq!(reply.status, 400, "{value}: {}", reply.body);
        assert_eq!(reply.body["code"], "invalid_query", "{value}");
        assert_eq!(reply.body["parameter"], parameter, "{value}");
        assert_eq!(reply.body["position"], position, "{value}: {}", reply.body);
    }
}

fn arguments(base: &str, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    all.extend(["--server".to_owned(), base.to_owned()]);
    all
}

#[tokio::test]
async fn the_cli_queries_and_counts() {
    let cli = Cli::start(arguments);
    twin(&cli.server.base, "b-1", "berlin", "pump", 35).await;
    twin(&cli.server.base, "p-1", "paris", "pump", 10).await;
    let found = cli.ok(&["twin", "query", "reported.temp > 30"]);
    assert!(found.contains("b-1") && !found.contains("p-1"), "{found}");
    let counted = cli.ok(&["twin", "count", "--group-by", "tags.site"]);
    assert!(
        counted.contains("berlin") && counted.contains("total  2"),
        "{counted}"
    );
    let failed = cli.fails(&["twin", "query", "reported.temp >"]);
    assert!(
        failed.contains("invalid_query") && failed.contains("position 15"),
        "{failed}"
    );
}
