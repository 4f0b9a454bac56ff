use super::*;
use doppel_store::{HistoryBuckets, MemoryStore};

const NOW: Millis = Millis(1_700_000_000_000);

/// A valid supplied secret: 43 characters, all 64 of base64url's alphabet in play.
const SUPPLIED: &str = "dpt_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq";

fn memory() -> Arc<dyn TokenStore> {
    Arc::new(MemoryStore::new(HistoryBuckets::new(1_000)))
}

fn file_secret(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(ADMIN_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn the_first_start_writes_a_secret_only_its_user_reads_and_the_secret_is_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = load_tokens_or_bootstrap(memory(), dir.path(), None, NOW)
        .await
        .unwrap();
    let secret = file_secret(dir.path());
    let token = tokens
        .verify(&secret, NOW)
        .expect("the file's secret verifies");
    assert_eq!(token.roles, vec![Role::Admin]);
    assert_eq!(token.tenant, TenantScope::All);
    assert_eq!(token.name, FIRST_TOKEN_NAME);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_supplied_secret_becomes_the_first_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = load_tokens_or_bootstrap(memory(), dir.path(), Some(SUPPLIED), NOW)
        .await
        .unwrap();
    assert_eq!(file_secret(dir.path()), SUPPLIED);
    assert!(tokens.verify(SUPPLIED, NOW).is_some());
}

#[tokio::test]
async fn a_store_with_tokens_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = memory();
    load_tokens_or_bootstrap(store.clone(), dir.path(), Some(SUPPLIED), NOW)
        .await
        .unwrap();
    std::fs::remove_file(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
    let tokens = load_tokens_or_bootstrap(store, dir.path(), None, NOW)
        .await
        .unwrap();
    assert_eq!(tokens.list().len(), 1, "no second admin token");
    assert!(
        !dir.path().join(ADMIN_TOKEN_FILE).exists(),
        "no new file for a token nobody made"
    );
}

#[tokio::test]
async fn a_secret_that_is_not_random_enough_stops_the_start_before_any_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_tokens_or_bootstrap(memory(), dir.path(), Some("dpt_short"), NOW)
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, BootstrapError::InvalidSecret(_)), "{err}");
    assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
}

#[cfg(unix)]
#[tokio::test]
async fn a_file_left_by_an_earlier_start_is_made_private_again() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(ADMIN_TOKEN_FILE);
    std::fs::write(&path, "an old secret\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    load_tokens_or_bootstrap(memory(), dir.path(), Some(SUPPLIED), NOW)
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(file_secret(dir.path()), SUPPLIED);
}
