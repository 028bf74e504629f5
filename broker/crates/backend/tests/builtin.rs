//! The built-in store on a real (SQLite) Leash store: values are sealed,
//! bound to their path, readable only with a matching grant, and never
//! printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // fixtures are stamped with the real time // tests

use std::sync::Arc;

use chrono::Utc;
use leash_backend::{BackendError, BuiltinBackend, SecretBackend, SecretData};
use leash_domain::KeyedHasher;
use leash_policy::{Capability, canonicalize, unchecked_grant_for_tests};
use leash_store::{PoolOptions, SqliteStore, Store};

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let s = SqliteStore::open(
        &dir.path().join("t.db"),
        &PoolOptions::default(),
        KeyedHasher::new(&[3u8; 32]).unwrap(),
    )
    .await
    .unwrap();
    s.migrate().await.unwrap();
    Arc::new(s)
}

fn data(pairs: &[(&str, &str)]) -> SecretData {
    let m: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
        .collect();
    SecretData::from_map(&m).unwrap()
}

fn read_grant(path: &str) -> leash_policy::Grant {
    unchecked_grant_for_tests("w", Capability::Read, canonicalize(path).unwrap())
}

#[tokio::test]
async fn round_trip_versions_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let b = BuiltinBackend::new("secret", store.clone(), &[7u8; 32], 2).unwrap();
    assert!(b.is_empty().await.unwrap());
    assert_eq!(
        b.import("app/db", &data(&[("password", "one")]), Utc::now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.import("app/db", &data(&[("password", "two")]), Utc::now())
            .await
            .unwrap(),
        2
    );
    b.import("app/sub/x", &data(&[("k", "v")]), Utc::now())
        .await
        .unwrap();

    let latest = b
        .read(&read_grant("secret/app/db"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.version, 2);
    assert!(latest.data.as_ref().unwrap().expose_json().contains("two"));
    let v1 = b
        .read(&read_grant("secret/app/db"), Some(1))
        .await
        .unwrap()
        .unwrap();
    assert!(v1.data.as_ref().unwrap().expose_json().contains("one"));
    assert!(
        b.read(&read_grant("secret/app/db"), Some(9))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.read(&read_grant("secret/app/none"), None)
            .await
            .unwrap()
            .is_none()
    );

    let list =
        unchecked_grant_for_tests("w", Capability::List, canonicalize("secret/app/").unwrap());
    assert_eq!(b.list(&list).await.unwrap(), vec!["db", "sub/"]);
    let root = unchecked_grant_for_tests("w", Capability::List, canonicalize("secret/").unwrap());
    assert_eq!(b.list(&root).await.unwrap(), vec!["app/"]);
}

#[tokio::test]
async fn the_database_sees_only_ciphertext_bound_to_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let b = BuiltinBackend::new("secret", store.clone(), &[7u8; 32], 2).unwrap();
    b.import(
        "app/db",
        &data(&[("password", "hunter2-plaintext")]),
        Utc::now(),
    )
    .await
    .unwrap();
    b.import("app/other", &data(&[("password", "x")]), Utc::now())
        .await
        .unwrap();
    let raw = store
        .kv_get("secret", "app/db", None)
        .await
        .unwrap()
        .unwrap();
    let sealed = raw.sealed.clone().unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));

    // A sealed row copied to another path (an attacker with database access
    // moving a value to where they can read it) does not open.
    store
        .kv_put("secret", "app/other", &sealed, Utc::now())
        .await
        .unwrap();
    let e = b
        .read(&read_grant("secret/app/other"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Corrupt(_)), "{e:?}");
    // Nor under another key.
    let other_key = BuiltinBackend::new("secret", store.clone(), &[8u8; 32], 2).unwrap();
    assert!(
        other_key
            .read(&read_grant("secret/app/db"), None)
            .await
            .is_err()
    );
    // Nor under another mount name.
    store
        .kv_put("vault2", "app/db", &sealed, Utc::now())
        .await
        .unwrap();
    let m2 = BuiltinBackend::new("vault2", store.clone(), &[7u8; 32], 2).unwrap();
    assert!(m2.read(&read_grant("vault2/app/db"), None).await.is_err());
}

#[tokio::test]
async fn a_grant_must_match_mount_and_capability() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let b = BuiltinBackend::new("secret", store, &[7u8; 32], 2).unwrap();
    b.import("app/db", &data(&[("k", "v")]), Utc::now())
        .await
        .unwrap();
    let other_mount = read_grant("secretx/app/db");
    assert!(matches!(
        b.read(&other_mount, None).await,
        Err(BackendError::GrantMismatch)
    ));
    let list_grant = unchecked_grant_for_tests(
        "w",
        Capability::List,
        canonicalize("secret/app/db").unwrap(),
    );
    assert!(matches!(
        b.read(&list_grant, None).await,
        Err(BackendError::GrantMismatch)
    ));
    let read_as_list = read_grant("secret/app/");
    assert!(matches!(
        b.list(&read_as_list).await,
        Err(BackendError::GrantMismatch)
    ));
}

#[tokio::test]
async fn secret_data_never_prints_and_keys_must_be_32_bytes() {
    let d = data(&[("password", "do-not-print")]);
    assert!(!format!("{d:?}").contains("do-not-print"));
    assert!(SecretData::from_json(zeroize::Zeroizing::new("[1]".into())).is_err());
    assert!(SecretData::from_json(zeroize::Zeroizing::new("{bad".into())).is_err());
    let dir = tempfile::tempdir().unwrap();
    assert!(BuiltinBackend::new("secret", store(&dir).await, &[1u8; 16], 2).is_err());
}
