//! The paging options of every listing. The API answers a listing one page at a time
//! (`{"items": [...], "next_cursor": ...}`, `next_cursor` set while there may be more); `--all`
//! follows the cursor to the last page and hands the printer one page holding every item.

use super::client::Client;
use anyhow::bail;
use clap::Args;
use reqwest::RequestBuilder;
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct Paging {
    /// Most items in one page (with --all, in each request).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Continue after a page: the `next cursor` the previous page printed.
    #[arg(long)]
    cursor: Option<String>,
    /// Fetch every page (from --cursor on, if given), following the cursor, and print them as
    /// one list.
    #[arg(long)]
    all: bool,
}

impl Paging {
    /// The page the options ask for; with `--all`, every page from there to the last, as one
    /// page whose `next_cursor` is null. `request` makes the listing's request without
    /// `limit` and `cursor`, which are added here.
    pub async fn fetch(
        &self,
        client: &Client,
        request: impl Fn() -> RequestBuilder,
    ) -> anyhow::Result<Value> {
        let mut cursor = self.cursor.clone();
        let mut items = Vec::new();
        loop {
            let mut page = client
                .send(self.page_request(request(), cursor.as_deref()))
                .await?;
            if !self.all {
                return Ok(page);
            }
            match page.get_mut("items").map(Value::take) {
                Some(Value::Array(more)) => items.extend(more),
                _ => bail!("the server's answer is not a page (it has no items array)"),
            }
            let next = page
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match next {
                None => return Ok(json!({ "items": items, "next_cursor": null })),
                Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                    bail!("the server answered cursor {next:?} with itself; stopped following it")
                }
                Some(next) => cursor = Some(next),
            }
        }
    }

    fn page_request(&self, request: RequestBuilder, cursor: Option<&str>) -> RequestBuilder {
        let request = match self.limit {
            Some(limit) => request.query(&[("limit", limit)]),
            None => request,
        };
        match cursor {
            Some(cursor) => request.query(&[("cursor", cursor)]),
            None => request,
        }
    }
}
