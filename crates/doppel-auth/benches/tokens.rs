//! What checking a bearer token costs every authenticated HTTP request (and a token login over
//! MQTT): one SHA-256 of the secret and two map lookups under a read lock.
//!
//! - `tokens/verify_known`: a valid secret among 10,000 tokens.
//! - `tokens/verify_unknown`: a well-formed secret no token has (a guess): the same hash, a miss.
//! - `tokens/verify_malformed`: a header that is no secret at all, refused before hashing.

use criterion::{Criterion, criterion_group, criterion_main};
use doppel_auth::{NewToken, Role, TenantScope, Tokens, generate_secret};
use doppel_model::Millis;
use doppel_store::{HistoryBuckets, MemoryStore};
use std::hint::black_box;
use std::sync::Arc;

/// Enough tokens that the maps are not toy-sized; a lookup's cost barely depends on it.
const TOKENS: usize = 10_000;
const NOW: Millis = Millis(1_800_000_000_000);

fn tokens() -> (Tokens, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    // The verification path never touches the store: it reads the in-memory maps only.
    let tokens = Tokens::load(Arc::new(MemoryStore::new(HistoryBuckets::new(1_000))))
        .expect("an empty store loads");
    let mut last_secret = String::new();
    runtime.block_on(async {
        for n in 0..TOKENS {
            let created = tokens
                .create(
                    NewToken {
                        name: format!("app-{n}"),
                        roles: vec![Role::AppRead],
                        tenant: TenantScope::All,
                        expires_at: None,
                    },
                    NOW,
                )
                .await
                .expect("a token is created");
            last_secret = created.secret;
        }
    });
    (tokens, last_secret)
}

fn verify(c: &mut Criterion) {
    let (tokens, known) = tokens();
    let unknown = generate_secret().expect("a random secret");
    let mut group = c.benchmark_group("tokens");
    group.bench_function("verify_known", |b| {
        b.iter(|| black_box(tokens.verify(black_box(&known), NOW)))
    });
    group.bench_function("verify_unknown", |b| {
        b.iter(|| black_box(tokens.verify(black_box(&unknown), NOW)))
    });
    group.bench_function("verify_malformed", |b| {
        b.iter(|| black_box(tokens.verify(black_box("not-a-token"), NOW)))
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
