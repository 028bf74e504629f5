//! `Issuers::load` refuses every unsafe or unusable configuration, and its
//! errors name the issuer, the file and the reason, never key material.

mod common;

use common::*;
use leash_attest::{ConfigError, IssuerConfig, Issuers};
use serde_json::json;

fn load_err(configs: &[IssuerConfig]) -> String {
    let r = Issuers::load(configs);
    assert!(r.is_err(), "configuration accepted");
    let s = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!s.contains("MII"), "key material in error: {s}");
    s
}

fn rsa_cfg(name: &str) -> IssuerConfig {
    let mut c = cfg(name, RSA_ISS, &["RS256"]);
    c.public_key_files = vec![fixture("test-only-rsa-a.pub.pem")];
    c
}

#[test]
fn a_good_configuration_loads_and_deserialises_with_defaults() {
    let c: IssuerConfig = serde_json::from_value(json!({
        "name": "rsa",
        "issuer": RSA_ISS,
        "audiences": ["leash"],
        "algorithms": ["RS256"],
        "public_key_files": [fixture("test-only-rsa-a.pub.pem")],
    }))
    .unwrap();
    assert_eq!(c.leeway_secs, 60);
    assert!(c.required_claims.is_empty() && c.jwks_file.is_none());
    let i = Issuers::load(&[c]).unwrap();
    assert_eq!(i.names(), vec!["rsa"]);
    // PKCS#1 RSA public keys are accepted too.
    let mut c = rsa_cfg("pkcs1");
    c.public_key_files = vec![fixture("test-only-rsa-a.pkcs1.pub.pem")];
    let i = Issuers::load(&[c]).unwrap();
    let w = World::new();
    let t = w.rsa_token(&claims(RSA_ISS));
    assert!(i.verify("pkcs1", &t, now()).is_ok());
    // An empty configuration is an empty set.
    assert!(Issuers::load(&[]).unwrap().names().is_empty());
}

#[test]
fn unknown_configuration_fields_are_refused() {
    let r: Result<IssuerConfig, _> = serde_json::from_value(json!({
        "name": "rsa", "issuer": RSA_ISS, "audiences": ["leash"], "algorithms": ["RS256"],
        "jwks_url": "https://attacker.example/jwks",
    }));
    assert!(r.is_err());
}

#[test]
fn duplicate_names_are_refused() {
    let s = load_err(&[rsa_cfg("a"), rsa_cfg("b"), rsa_cfg("a")]);
    assert!(s.contains("\"a\"") && s.contains("twice"), "{s}");
}

#[test]
fn leeway_is_capped_at_sixty_seconds() {
    let mut c = rsa_cfg("rsa");
    c.leeway_secs = 60;
    assert!(Issuers::load(std::slice::from_ref(&c)).is_ok());
    c.leeway_secs = 61;
    let s = load_err(&[c]);
    assert!(s.contains("leeway") && s.contains("\"rsa\""), "{s}");
    let mut c = rsa_cfg("rsa");
    c.leeway_secs = u64::MAX;
    load_err(&[c]);
}

#[test]
fn empty_lists_and_names_are_refused() {
    let mut c = rsa_cfg("rsa");
    c.algorithms.clear();
    assert!(load_err(&[c]).contains("algorithms"));
    let mut c = rsa_cfg("rsa");
    c.audiences.clear();
    assert!(load_err(&[c]).contains("audiences"));
    let mut c = rsa_cfg("rsa");
    c.audiences = vec!["".into()];
    assert!(load_err(&[c]).contains("audiences"));
    let mut c = rsa_cfg("rsa");
    c.issuer = String::new();
    assert!(load_err(&[c]).contains("issuer"));
    for bad in ["", "has space", "a\nb", &"x".repeat(65)] {
        let c = rsa_cfg(bad);
        let s = load_err(&[c]);
        assert!(!s.contains('\n'), "{s}");
    }
    let mut c = rsa_cfg("rsa");
    c.public_key_files.clear();
    assert!(load_err(&[c]).contains("no keys"));
    let mut c = rsa_cfg("rsa");
    c.required_claims = vec!["".into()];
    assert!(load_err(&[c]).contains("required_claims"));
}

#[test]
fn hmac_none_and_unknown_algorithms_are_refused() {
    for alg in [
        "HS256", "HS384", "HS512", "hs256", "none", "None", "NONE", "ES512", "RSA-OAEP", "rs256",
        "",
    ] {
        let mut c = rsa_cfg("rsa");
        c.algorithms = vec!["RS256".into(), alg.into()];
        let s = load_err(&[c]);
        assert!(s.contains("algorithm"), "{alg}: {s}");
    }
}

#[test]
fn a_key_that_fits_no_allowed_algorithm_is_refused() {
    let w = World::new();
    // An EC key where only RSA algorithms are allowed.
    let ec = write(w.dir.path(), "ec-only.pem", &w.ec.public_pem());
    let mut c = cfg("rsa", RSA_ISS, &["RS256", "PS256"]);
    c.public_key_files = vec![ec.clone()];
    let s = load_err(&[c]);
    assert!(
        s.contains("\"rsa\"") && s.contains("ec-only.pem") && s.contains("P-256"),
        "{s}"
    );
    // An RSA key where only ES256 is allowed.
    let mut c = cfg("ec", EC_ISS, &["ES256"]);
    c.public_key_files = vec![fixture("test-only-rsa-a.pub.pem")];
    assert!(load_err(&[c]).contains("RSA"));
    // A P-384 key for ES256.
    let mut c = cfg("ec", EC_ISS, &["ES256"]);
    c.public_key_files = vec![fixture("test-only-p384.pub.pem")];
    assert!(load_err(&[c]).contains("P-384"));
    // A JWK whose own alg is outside the allow-list, or outside its family.
    let mut jwk = w.rsa.jwk();
    jwk["alg"] = json!("PS256");
    let p = write(w.dir.path(), "ps.json", &json!({"keys": [jwk]}).to_string());
    let mut c = cfg("j", RSA_ISS, &["RS256"]);
    c.jwks_file = Some(p);
    assert!(load_err(&[c]).contains("PS256"));
    let mut jwk = w.rsa.jwk();
    jwk["alg"] = json!("ES256");
    let p = write(
        w.dir.path(),
        "mismatch.json",
        &json!({"keys": [jwk]}).to_string(),
    );
    let mut c = cfg("j", RSA_ISS, &["RS256", "ES256"]);
    c.jwks_file = Some(p);
    assert!(load_err(&[c]).contains("does not fit"));
    let mut jwk = w.rsa.jwk();
    jwk["alg"] = json!("HS256");
    let p = write(w.dir.path(), "hs.json", &json!({"keys": [jwk]}).to_string());
    let mut c = cfg("j", RSA_ISS, &["RS256"]);
    c.jwks_file = Some(p);
    load_err(&[c]);
}

#[test]
fn weak_unsupported_and_private_keys_are_refused() {
    let mut c = rsa_cfg("rsa");
    c.public_key_files = vec![fixture("test-only-rsa-1024.pub.pem")];
    assert!(load_err(&[c]).contains("1024 bits"));
    let mut c = cfg("ec", EC_ISS, &["ES256", "ES384"]);
    c.public_key_files = vec![fixture("test-only-p521.pub.pem")];
    assert!(load_err(&[c]).contains("curve"));
    // A private key configured as a public key: refused, and not echoed.
    let mut c = rsa_cfg("rsa");
    c.public_key_files = vec![fixture("test-only-rsa-a.key.pem")];
    let s = load_err(&[c]);
    assert!(s.contains("private key"), "{s}");
    let pem = std::fs::read_to_string(fixture("test-only-rsa-a.key.pem")).unwrap();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!s.contains(line));
    }
    let w = World::new();
    // Not PEM at all; binary; empty.
    for (name, bytes) in [
        ("junk.pem", b"hello".to_vec()),
        ("bin.pem", vec![0xff, 0xfe, 0x00]),
        ("empty.pem", vec![]),
        (
            "cert.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        ),
    ] {
        let p = w.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut c = rsa_cfg("rsa");
        c.public_key_files = vec![p];
        assert!(load_err(&[c]).contains(name));
    }
}

#[test]
fn bad_jwk_sets_are_refused() {
    let w = World::new();
    let mut a = w.rsa.jwk();
    a["kid"] = json!("same");
    let mut b = w.rsa_b.jwk();
    b["kid"] = json!("same");
    let mut with_d = w.jwks_ec.jwk();
    with_d["d"] = json!("UFJJVkFURS1LRVktTUFURVJJQUw");
    let mut enc = w.rsa.jwk();
    enc["use"] = json!("enc");
    let mut empty_kid = w.rsa.jwk();
    empty_kid["kid"] = json!("");
    let cases = [
        (
            "dup-kid",
            json!({"keys": [a, b]}).to_string(),
            "more than one key",
        ),
        ("private", json!({"keys": [with_d]}).to_string(), "private"),
        (
            "oct",
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0LWhtYWMta2V5"}]}).to_string(),
            "private or symmetric",
        ),
        ("enc", json!({"keys": [enc]}).to_string(), "use"),
        ("empty-kid", json!({"keys": [empty_kid]}).to_string(), "kid"),
        ("no-keys", json!({"keys": []}).to_string(), "no keys"),
        ("not-set", json!([w.rsa.jwk()]).to_string(), "JWK set"),
        ("not-json", "{".to_string(), "JSON"),
        (
            "dup-member",
            format!("{{\"keys\":[],\"keys\":[{}]}}", w.rsa.jwk()),
            "duplicate",
        ),
        (
            "bad-b64",
            json!({"keys": [{"kty": "RSA", "n": "a+b/", "e": "AQAB"}]}).to_string(),
            "base64url",
        ),
        (
            "bad-crv",
            json!({"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}).to_string(),
            "curve",
        ),
    ];
    for (name, text, want) in cases {
        let p = write(w.dir.path(), &format!("{name}.json"), &text);
        let mut c = cfg("j", JWKS_ISS, &["RS256", "ES256"]);
        c.jwks_file = Some(p);
        let s = load_err(&[c]);
        assert!(
            s.contains(want) && s.contains(&format!("{name}.json")),
            "{name}: {s}"
        );
        assert!(
            !s.contains("UFJJVkFURS1LRVktTUFURVJJQUw") && !s.contains("c2VjcmV0LWhtYWMta2V5"),
            "{s}"
        );
    }
}

#[test]
fn a_missing_file_names_issuer_and_path() {
    let mut c = rsa_cfg("myissuer");
    c.public_key_files = vec!["/nonexistent/leash-test/key.pem".into()];
    let e = Issuers::load(&[c]).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    let s = e.to_string();
    assert!(
        s.contains("myissuer") && s.contains("/nonexistent/leash-test/key.pem"),
        "{s}"
    );
    let mut c = cfg("j", JWKS_ISS, &["RS256"]);
    c.jwks_file = Some("/nonexistent/leash-test/jwks.json".into());
    assert!(load_err(&[c]).contains("jwks.json"));
}
