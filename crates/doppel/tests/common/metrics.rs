//! `GET /metrics` read back: a scrape of the Prometheus text format, and its samples.

use super::Server;
use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} number`.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of one scrape.
pub struct Scrape(pub Vec<Sample>);

/// The text of one `GET /metrics`, checked to be Prometheus' text format.
pub async fn exposition(server: &Server) -> String {
    let response = reqwest::get(server.url("/metrics"))
        .await
        .expect("GET /metrics reaches the server");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4"));
    response.text().await.expect("a body")
}

impl Scrape {
    pub async fn take(server: &Server) -> Scrape {
        Scrape::of(&exposition(server).await)
    }

    /// The samples of an exposition's text.
    pub fn of(text: &str) -> Scrape {
        Scrape(text.lines().filter_map(parse_sample).collect())
    }

    /// The sum of the samples of `name` that carry every one of `labels` (0 when none does,
    /// as for a counter not incremented yet).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|sample| sample.value)
            .sum()
    }
}

/// Reads a sample line; comments and blank lines are `None`.
pub fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value = value.parse().expect("a sample's value is a number");
    let Some((name, rest)) = series.split_once('{') else {
        return Some(Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let body = rest.strip_suffix('}').expect("labels end with }");
    Some(Sample {
        name: name.to_owned(),
        labels: parse_labels(body),
        value,
    })
}

/// Reads `key="value",key="value"`, where a value may hold escaped quotes and commas.
pub fn parse_labels(mut body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body.split_once("=\"").expect("a label is key=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("a label value ends with a quote") {
                (_, '\\') => {
                    let (_, escaped) = chars.next().expect("an escape names a character");
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                (at, '"') => break at,
                (_, other) => value.push(other),
            }
        };
        labels.insert(key.to_owned(), value);
        body = rest[end + 1..].trim_start_matches(',');
    }
    labels
}
