//! The development issuer: mint → verify through the ordinary issuer path,
//! key reuse across starts, file modes, and no key or token in output.

mod common;

use std::time::Duration;

use common::{CANARY, now, ts};
use leash_attest::{ConfigError, DevIssuer, Issuers, LoginError};
use serde_json::{Map, Value, json};

fn extra() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("team".into(), json!(CANARY));
    m
}

#[test]
fn minted_tokens_verify_through_the_issuer_config() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevIssuer::load_or_create(&dir.path().join("state")).unwrap();
    let cfg = dev.issuer_config();
    assert_eq!(cfg.name, DevIssuer::NAME);
    assert_eq!(cfg.issuer, DevIssuer::ISSUER);
    assert_eq!(cfg.audiences, vec![DevIssuer::AUDIENCE.to_string()]);
    assert_eq!(cfg.algorithms, vec!["ES256".to_string()]);
    let issuers = Issuers::load(&[cfg]).unwrap();

    let t = dev
        .mint("app-1", Duration::from_secs(300), extra(), now())
        .unwrap();
    let v = issuers.verify("dev", &t, now()).unwrap();
    assert_eq!(v.subject, "app-1");
    assert_eq!(v.iss, DevIssuer::ISSUER);
    assert_eq!(v.expires_at.timestamp(), ts() + 300);
    assert_eq!(v.issued_at.map(|t| t.timestamp()), Some(ts()));
    assert_eq!(v.claims["aud"], json!("leash"));
    assert_eq!(v.claims["nbf"], json!(ts()));
    assert_eq!(v.claims["team"], json!(CANARY));
    assert!(v.jti.as_ref().is_some_and(|j| j.len() >= 22));

    // The header carries the kid; the JWKS names it.
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            t.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": "JWT", "kid": dev.kid()})
    );
    let jwks: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/dev-issuer.jwks.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], json!(dev.kid()));
    assert!(jwks["keys"][0].get("d").is_none());

    // Every jti is fresh.
    let t2 = dev
        .mint("app-1", Duration::from_secs(300), Map::new(), now())
        .unwrap();
    assert_ne!(issuers.verify("dev", &t2, now()).unwrap().jti, v.jti);

    // Expiry follows the ttl (plus the 60 s leeway).
    let later = now() + chrono::Duration::seconds(360);
    assert_eq!(
        issuers.verify("dev", &t, later).unwrap_err(),
        LoginError::Expired
    );
}

#[test]
fn key_files_are_reused_on_later_starts() {
    let dir = tempfile::tempdir().unwrap();
    let first = DevIssuer::load_or_create(dir.path()).unwrap();
    let key_before = std::fs::read(dir.path().join("dev-issuer.key")).unwrap();
    let t = first
        .mint("app-1", Duration::from_secs(300), Map::new(), now())
        .unwrap();
    drop(first);

    let second = DevIssuer::load_or_create(dir.path()).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("dev-issuer.key")).unwrap(),
        key_before
    );
    let issuers = Issuers::load(&[second.issuer_config()]).unwrap();
    assert!(
        issuers.verify("dev", &t, now()).is_ok(),
        "a token from the first start still verifies"
    );

    // A deleted or stale JWKS is rewritten from the key.
    let jwks_path = dir.path().join("dev-issuer.jwks.json");
    std::fs::write(&jwks_path, "{\"keys\":[]}").unwrap();
    let third = DevIssuer::load_or_create(dir.path()).unwrap();
    assert_eq!(third.kid(), second.kid());
    let issuers = Issuers::load(&[third.issuer_config()]).unwrap();
    assert!(issuers.verify("dev", &t, now()).is_ok());

    // A different directory means a different key: its tokens do not verify.
    let other_dir = tempfile::tempdir().unwrap();
    let other = DevIssuer::load_or_create(other_dir.path()).unwrap();
    assert_ne!(other.kid(), third.kid());
    let t_other = other
        .mint("app-1", Duration::from_secs(300), Map::new(), now())
        .unwrap();
    assert_eq!(
        issuers.verify("dev", &t_other, now()).unwrap_err(),
        LoginError::UnknownKeyId
    );
}

#[cfg(unix)]
#[test]
fn the_key_file_is_private_and_a_loose_one_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    DevIssuer::load_or_create(dir.path()).unwrap();
    let key = dir.path().join("dev-issuer.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = DevIssuer::load_or_create(dir.path()).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("chmod 600") && s.contains("dev-issuer.key"),
        "{s}"
    );
    for line in text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!s.contains(line) && !format!("{e:?}").contains(line));
    }

    // A symlinked key is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&key, dir2.path().join("dev-issuer.key")).unwrap();
    assert!(DevIssuer::load_or_create(dir2.path()).is_err());
}

#[test]
fn a_corrupt_key_file_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dev-issuer.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let e = DevIssuer::load_or_create(dir.path()).unwrap_err();
    assert!(e.to_string().contains("P-256 PKCS#8"), "{e}");
    assert!(
        std::fs::read_to_string(&key).unwrap().contains("AAAA"),
        "the file was left alone"
    );
}

#[test]
fn debug_and_errors_never_show_the_key_or_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevIssuer::load_or_create(dir.path()).unwrap();
    let key_text = std::fs::read_to_string(dir.path().join("dev-issuer.key")).unwrap();
    let dbg = format!("{dev:?}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!dbg.contains(line));
    }
    let t = dev
        .mint("app-1", Duration::from_secs(60), Map::new(), now())
        .unwrap();
    assert!(!dbg.contains(&t));
}

#[test]
fn minting_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevIssuer::load_or_create(dir.path()).unwrap();
    let mint_err = |sub: &str, ttl: Duration, extra: Map<String, Value>| -> ConfigError {
        dev.mint(sub, ttl, extra, now()).unwrap_err()
    };
    assert!(
        mint_err("", Duration::from_secs(60), Map::new())
            .to_string()
            .contains("subject")
    );
    assert!(
        mint_err("a", Duration::from_millis(500), Map::new())
            .to_string()
            .contains("ttl")
    );
    assert!(
        mint_err("a", Duration::from_secs(u64::MAX), Map::new())
            .to_string()
            .contains("range")
    );
    for reserved in ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"] {
        let mut m = Map::new();
        m.insert(reserved.into(), json!("https://attacker.example"));
        let e = mint_err("a", Duration::from_secs(60), m);
        assert!(
            e.to_string().contains(reserved) && !e.to_string().contains("attacker"),
            "{e}"
        );
    }
    let mut big = Map::new();
    big.insert("pad".into(), json!("x".repeat(20_000)));
    assert!(
        mint_err("a", Duration::from_secs(60), big)
            .to_string()
            .contains("larger")
    );
}
