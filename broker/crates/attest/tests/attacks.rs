//! The JWT attack catalogue (security-anchors §5 items 1-12, §3.1) as tests,
//! all with an injected `now`. Every refusal is also checked for leaks of
//! the token or claim values (see `World::verify`).

mod common;

use chrono::Duration;
use common::*;
use leash_attest::{LoginError, MAX_JWT_BYTES};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Valid tokens

#[test]
fn valid_tokens_of_every_family_pass() {
    let w = World::new();
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let t = token(&w.rsa, &header(alg), &claims(RSA_ISS));
        let v = w.verify("rsa", &t).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.subject, "workload-1");
        assert_eq!(v.issuer_name, "rsa");
        assert_eq!(v.iss, RSA_ISS);
        assert_eq!(v.expires_at.timestamp(), ts() + 300);
        assert_eq!(v.issued_at.map(|t| t.timestamp()), Some(ts()));
        assert_eq!(v.jti.as_deref(), Some(JTI));
        assert_eq!(v.claims["team"], json!(CANARY));
    }
    let t = token(&w.ec, &header("ES256"), &claims(EC_ISS));
    assert_eq!(w.verify("ec", &t).unwrap().subject, "workload-1");
    let t = token(&w.ed, &header("EdDSA"), &claims(ED_ISS));
    assert_eq!(w.verify("ed", &t).unwrap().subject, "workload-1");
    let t = token(&w.p384, &header("ES384"), &claims(P384_ISS));
    assert_eq!(w.verify("p384", &t).unwrap().subject, "workload-1");
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let w = World::new();
    let t = token(
        &w.rsa,
        &json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims(JWKS_ISS),
    );
    assert!(w.verify("jwks", &t).is_ok());
    let t = token(
        &w.jwks_ec,
        &json!({"alg": "ES256", "kid": "ec-1"}),
        &claims(JWKS_ISS),
    );
    assert!(w.verify("jwks", &t).is_ok());
    // Without a kid: the only key that fits the algorithm.
    let t = token(&w.jwks_ec, &header("ES256"), &claims(JWKS_ISS));
    assert!(w.verify("jwks", &t).is_ok());
    let t = token(&w.rsa, &header("RS256"), &claims(JWKS_ISS));
    assert!(w.verify("jwks", &t).is_ok());
}

#[test]
fn tokens_minted_by_an_independent_library_verify() {
    use jsonwebtoken::{Algorithm as A, EncodingKey, Header, encode};
    let w = World::new();
    let rsa_pem = std::fs::read(fixture("test-only-rsa-a.key.pem")).unwrap();
    let rsa_key = EncodingKey::from_rsa_pem(&rsa_pem).unwrap();
    for alg in [A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512] {
        let t = encode(&Header::new(alg), &claims(RSA_ISS), &rsa_key).unwrap();
        assert!(w.verify("rsa", &t).is_ok(), "{alg:?}");
    }
    let Signer::P256(_, ec_der) = &w.ec else {
        unreachable!()
    };
    let t = encode(
        &Header::new(A::ES256),
        &claims(EC_ISS),
        &EncodingKey::from_ec_der(ec_der),
    )
    .unwrap();
    assert!(w.verify("ec", &t).is_ok());
    let Signer::Ed(_, ed_der) = &w.ed else {
        unreachable!()
    };
    let t = encode(
        &Header::new(A::EdDSA),
        &claims(ED_ISS),
        &EncodingKey::from_ed_der(ed_der),
    )
    .unwrap();
    assert!(w.verify("ed", &t).is_ok());
    let p384_pem = std::fs::read(fixture("test-only-p384.key.pem")).unwrap();
    let t = encode(
        &Header::new(A::ES384),
        &claims(P384_ISS),
        &EncodingKey::from_ec_pem(&p384_pem).unwrap(),
    )
    .unwrap();
    assert!(w.verify("p384", &t).is_ok());
}

// ---------------------------------------------------------------------------
// 1. alg: none

#[test]
fn alg_none_in_any_case_is_refused() {
    let w = World::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = signing_input(&header(alg), &claims(RSA_ISS));
        for issuer in ["rsa", "ec", "ed", "jwks"] {
            // Empty signature.
            let e = err(w.verify(issuer, &format!("{input}.")));
            assert_eq!(
                e,
                LoginError::AlgorithmNotAllowed(alg.into()),
                "{issuer} {alg}"
            );
            assert_eq!(
                e.to_string(),
                format!("error validating token: algorithm \"{alg}\" is not allowed")
            );
            // Missing signature part.
            assert_eq!(err(w.verify(issuer, &input)), LoginError::NotCompact);
            // A real signature does not help either.
            let e = err(w.verify(
                issuer,
                &format!("{input}.{}", b64(&w.rsa.sign("RS256", input.as_bytes()))),
            ));
            assert_eq!(e, LoginError::AlgorithmNotAllowed(alg.into()));
        }
    }
}

#[test]
fn an_attacker_chosen_alg_is_escaped_in_the_error() {
    let w = World::new();
    let evil = "RS256\"\n{\"forged\":true}\u{202e}";
    let input = signing_input(&json!({"alg": evil}), &claims(RSA_ISS));
    let e = err(w.verify("rsa", &format!("{input}.AAAA")));
    let s = e.to_string();
    assert!(
        !s.contains('\n') && !s.contains('\u{202e}') && !s.contains("\"forged"),
        "{s}"
    );
    let long = "A".repeat(5000);
    let input = signing_input(&json!({"alg": long}), &claims(RSA_ISS));
    assert!(
        err(w.verify("rsa", &format!("{input}.AAAA")))
            .to_string()
            .len()
            < 120
    );
}

// ---------------------------------------------------------------------------
// 2. HS256 with the public key as the HMAC secret

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let w = World::new();
    let secrets: Vec<Vec<u8>> = vec![
        std::fs::read(fixture("test-only-rsa-a.pub.pem")).unwrap(),
        pem_der(&fixture("test-only-rsa-a.pub.pem")),
        std::fs::read(fixture("test-only-rsa-a.pkcs1.pub.pem")).unwrap(),
        w.ec.public_pem().into_bytes(),
    ];
    for (issuer, iss) in [("rsa", RSA_ISS), ("jwks", JWKS_ISS), ("ec", EC_ISS)] {
        for secret in &secrets {
            for alg in ["HS256", "HS384", "HS512"] {
                let mut h = header(alg);
                if issuer == "jwks" {
                    h["kid"] = json!("rsa-1");
                }
                let input = signing_input(&h, &claims(iss));
                let algo = match alg {
                    "HS256" => ring::hmac::HMAC_SHA256,
                    "HS384" => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                let tag = ring::hmac::sign(&ring::hmac::Key::new(algo, secret), input.as_bytes());
                let t = format!("{input}.{}", b64(tag.as_ref()));
                assert_eq!(
                    err(w.verify(issuer, &t)),
                    LoginError::AlgorithmNotAllowed(alg.into())
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. An algorithm the issuer may not use

#[test]
fn an_algorithm_outside_the_allow_list_is_refused() {
    let w = World::new();
    let t = token(&w.ec, &header("ES256"), &claims(RSA_ISS));
    assert_eq!(
        err(w.verify("rsa", &t)),
        LoginError::AlgorithmNotAllowed("ES256".into())
    );
    let t = token(&w.rsa, &header("RS256"), &claims(EC_ISS));
    assert_eq!(
        err(w.verify("ec", &t)),
        LoginError::AlgorithmNotAllowed("RS256".into())
    );
    let t = token(&w.ed, &header("EdDSA"), &claims(JWKS_ISS));
    assert_eq!(
        err(w.verify("jwks", &t)),
        LoginError::AlgorithmNotAllowed("EdDSA".into())
    );
    // Case matters: "rs256" is not RS256.
    let t = token(&w.rsa, &header("rs256"), &claims(RSA_ISS));
    assert_eq!(
        err(w.verify("rsa", &t)),
        LoginError::AlgorithmNotAllowed("rs256".into())
    );
    // ES512 is not supported at all.
    let t = token(&w.ec, &header("ES512"), &claims(EC_ISS));
    assert_eq!(
        err(w.verify("ec", &t)),
        LoginError::AlgorithmNotAllowed("ES512".into())
    );
}

#[test]
fn an_allowed_alg_with_a_key_of_another_family_is_refused() {
    let w = World::new();
    // The jwks issuer allows RS256 and ES256; kid ec-1 names the EC key.
    let t = token(
        &w.rsa,
        &json!({"alg": "RS256", "kid": "ec-1"}),
        &claims(JWKS_ISS),
    );
    assert_eq!(err(w.verify("jwks", &t)), LoginError::NoKeyForAlgorithm);
    let t = token(
        &w.jwks_ec,
        &json!({"alg": "ES256", "kid": "rsa-1"}),
        &claims(JWKS_ISS),
    );
    assert_eq!(err(w.verify("jwks", &t)), LoginError::NoKeyForAlgorithm);
    // A token labelled RS256 but signed with EC.
    let input = signing_input(&header("RS256"), &claims(RSA_ISS));
    let t = format!("{input}.{}", b64(&w.ec.sign("ES256", input.as_bytes())));
    assert_eq!(err(w.verify("rsa", &t)), LoginError::BadSignature);
    // PS256 label over an RS256 signature.
    let input = signing_input(&header("PS256"), &claims(RSA_ISS));
    let t = format!("{input}.{}", b64(&w.rsa.sign("RS256", input.as_bytes())));
    assert_eq!(err(w.verify("rsa", &t)), LoginError::BadSignature);
}

#[test]
fn a_jwk_bound_to_one_alg_is_not_used_for_another() {
    let w = World::new();
    let mut jwk = w.rsa.jwk();
    jwk["kid"] = json!("ps-only");
    jwk["alg"] = json!("PS256");
    let path = write(w.dir.path(), "ps.json", &json!({"keys": [jwk]}).to_string());
    let mut c = cfg("ps", RSA_ISS, &["RS256", "PS256"]);
    c.jwks_file = Some(path);
    let issuers = leash_attest::Issuers::load(&[c]).unwrap();
    let rs = token(
        &w.rsa,
        &json!({"alg": "RS256", "kid": "ps-only"}),
        &claims(RSA_ISS),
    );
    assert_eq!(
        issuers.verify("ps", &rs, now()).unwrap_err(),
        LoginError::NoKeyForAlgorithm
    );
    let rs = token(&w.rsa, &header("RS256"), &claims(RSA_ISS));
    assert_eq!(
        issuers.verify("ps", &rs, now()).unwrap_err(),
        LoginError::NoKeyForAlgorithm
    );
    let ps = token(
        &w.rsa,
        &json!({"alg": "PS256", "kid": "ps-only"}),
        &claims(RSA_ISS),
    );
    assert!(issuers.verify("ps", &ps, now()).is_ok());
}

// ---------------------------------------------------------------------------
// 4. Key-injection headers

#[test]
fn key_injection_and_crit_headers_are_refused_even_when_signed() {
    let w = World::new();
    let attacker_jwk = w.ec.jwk();
    let cases: Vec<(&str, Value)> = vec![
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("jwk", attacker_jwk),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIUQ"])),
        ("crit", json!(["exp"])),
        ("b64", json!(false)),
        ("enc", json!("A256GCM")),
        ("zip", json!("DEF")),
        ("cty", json!("JWT")),
    ];
    for (name, value) in cases {
        // Validly signed by the issuer's own key: the header is still refused.
        let mut h = header("RS256");
        h[name] = value.clone();
        let t = token(&w.rsa, &h, &claims(RSA_ISS));
        let e = err(w.verify("rsa", &t));
        assert_eq!(
            e,
            LoginError::ForbiddenHeader(match name {
                "jku" => "jku",
                "x5u" => "x5u",
                "jwk" => "jwk",
                "x5c" => "x5c",
                "crit" => "crit",
                "b64" => "b64",
                "enc" => "enc",
                "zip" => "zip",
                _ => "cty",
            })
        );
        assert_eq!(
            e.to_string(),
            format!("error validating token: header parameter \"{name}\" is not allowed")
        );
        // Signed by the attacker's key named in the header.
        let mut h = header("ES256");
        h[name] = value;
        let t = token(&w.ec, &h, &claims(JWKS_ISS));
        assert!(matches!(
            err(w.verify("jwks", &t)),
            LoginError::ForbiddenHeader(_)
        ));
    }
}

// ---------------------------------------------------------------------------
// 5. kid values

#[test]
fn unknown_and_hostile_kids_are_unknown_without_any_io() {
    let w = World::new();
    // Remove every key file: verification must not need them (no I/O).
    for c in &w.configs {
        if let Some(p) = &c.jwks_file {
            std::fs::remove_file(p).unwrap();
        }
    }
    let kids = [
        "random-3f9c1e2a".to_string(),
        "../../dev/null".into(),
        "/etc/passwd".into(),
        "' OR 1=1--".into(),
        "*)(uid=*))(|(uid=*".into(),
        "https://attacker.example/jwks.json".into(),
        "rsa-1\0".into(),
        "RSA-1".into(),
        "".into(),
        "k".repeat(10 * 1024),
    ];
    for kid in &kids {
        for (signer, alg) in [(&w.rsa, "RS256"), (&w.jwks_ec, "ES256")] {
            let t = token(signer, &json!({"alg": alg, "kid": kid}), &claims(JWKS_ISS));
            let e = err(w.verify("jwks", &t));
            assert_eq!(e, LoginError::UnknownKeyId, "kid len {}", kid.len());
            assert_eq!(e.to_string(), "error validating token: unknown key id");
        }
    }
    // A flood of random kids: each is a map miss, nothing else.
    let start = std::time::Instant::now();
    for i in 0..2000 {
        let t = token(
            &w.jwks_ec,
            &json!({"alg": "ES256", "kid": format!("flood-{i}")}),
            &claims(JWKS_ISS),
        );
        assert_eq!(
            w.issuers.verify("jwks", &t, now()).unwrap_err(),
            LoginError::UnknownKeyId
        );
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    // And the known kids still verify with the files gone.
    let t = token(
        &w.rsa,
        &json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims(JWKS_ISS),
    );
    assert!(w.verify("jwks", &t).is_ok());
}

#[test]
fn a_kid_of_the_wrong_type_is_malformed() {
    let w = World::new();
    for kid in [
        json!(1),
        json!(null),
        json!(["rsa-1"]),
        json!({"k": "rsa-1"}),
    ] {
        let t = token(
            &w.rsa,
            &json!({"alg": "RS256", "kid": kid}),
            &claims(JWKS_ISS),
        );
        assert_eq!(err(w.verify("jwks", &t)), LoginError::Malformed);
    }
}

#[test]
fn keys_configured_without_kid_ignore_the_tokens_kid() {
    // PEM keys carry no kid; a token's kid cannot select anything else and
    // cannot cause a lookup elsewhere. The signature still decides.
    let w = World::new();
    let t = token(
        &w.rsa,
        &json!({"alg": "RS256", "kid": "../../dev/null"}),
        &claims(RSA_ISS),
    );
    assert!(w.verify("rsa", &t).is_ok());
    let t = token(
        &w.rsa_b,
        &json!({"alg": "RS256", "kid": "../../dev/null"}),
        &claims(RSA_ISS),
    );
    assert_eq!(err(w.verify("rsa", &t)), LoginError::BadSignature);
}

#[test]
fn without_kid_more_than_one_fitting_key_is_ambiguous() {
    let w = World::new();
    let mut c = cfg("two", RSA_ISS, &["RS256"]);
    c.public_key_files = vec![
        fixture("test-only-rsa-a.pub.pem"),
        fixture("test-only-rsa-b.pub.pem"),
    ];
    let issuers = leash_attest::Issuers::load(&[c]).unwrap();
    let t = w.rsa_token(&claims(RSA_ISS));
    assert_eq!(
        issuers.verify("two", &t, now()).unwrap_err(),
        LoginError::AmbiguousKey
    );
}

// ---------------------------------------------------------------------------
// 6. Signature forgeries

#[test]
fn psychic_ecdsa_signatures_are_refused() {
    let w = World::new();
    let input = signing_input(&header("ES256"), &claims(EC_ISS));
    // r = s = 0, raw (64 bytes).
    let t = format!("{input}.{}", b64(&[0u8; 64]));
    assert_eq!(err(w.verify("ec", &t)), LoginError::BadSignature);
    // r = s = 0, DER-encoded.
    let t = format!(
        "{input}.{}",
        b64(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00])
    );
    assert_eq!(err(w.verify("ec", &t)), LoginError::BadSignature);
    // r = s = n (the group order) is as bad as zero.
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let t = format!("{input}.{}", b64(&[n.clone(), n].concat()));
    assert_eq!(err(w.verify("ec", &t)), LoginError::BadSignature);
    // A genuine signature in DER form where the raw form is required.
    let rng = ring::rand::SystemRandom::new();
    let Signer::P256(_, der) = &w.ec else {
        unreachable!()
    };
    let asn1 = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        der,
        &rng,
    )
    .unwrap();
    let t = format!(
        "{input}.{}",
        b64(asn1.sign(&rng, input.as_bytes()).unwrap().as_ref())
    );
    assert_eq!(err(w.verify("ec", &t)), LoginError::BadSignature);
    // Ed25519 all-zero.
    let input = signing_input(&header("EdDSA"), &claims(ED_ISS));
    let t = format!("{input}.{}", b64(&[0u8; 64]));
    assert_eq!(err(w.verify("ed", &t)), LoginError::BadSignature);
}

#[test]
fn truncated_padded_and_empty_signatures_are_refused() {
    let w = World::new();
    for (issuer, t) in [
        ("rsa", w.rsa_token(&claims(RSA_ISS))),
        ("ec", token(&w.ec, &header("ES256"), &claims(EC_ISS))),
        ("ed", token(&w.ed, &header("EdDSA"), &claims(ED_ISS))),
    ] {
        assert!(w.verify(issuer, &t).is_ok());
        let (input, sig64) = t.rsplit_once('.').unwrap();
        let sig = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig64)
            .unwrap();
        let bad = [
            b64(&sig[..sig.len() - 1]),
            b64(&sig[..sig.len() / 2]),
            b64(&[sig.clone(), vec![0]].concat()),
            b64(&[vec![0], sig.clone()].concat()),
            b64(&[sig.clone(), sig.clone()].concat()),
            String::new(),
        ];
        for s in bad {
            assert_eq!(
                err(w.verify(issuer, &format!("{input}.{s}"))),
                LoginError::BadSignature,
                "{issuer}"
            );
        }
        // Base64 padding, whitespace or the standard alphabet.
        for s in [
            format!("{sig64}="),
            format!("{sig64}=="),
            format!(" {sig64}"),
            sig64.replace('-', "+").replace('_', "/") + "+",
        ] {
            let e = err(w.verify(issuer, &format!("{input}.{s}")));
            assert!(
                matches!(e, LoginError::Malformed | LoginError::BadSignature),
                "{issuer}: {e}"
            );
        }
        // One flipped bit.
        let mut flipped = sig.clone();
        flipped[sig.len() / 2] ^= 1;
        assert_eq!(
            err(w.verify(issuer, &format!("{input}.{}", b64(&flipped)))),
            LoginError::BadSignature
        );
    }
}

#[test]
fn a_tampered_payload_or_header_is_refused() {
    let w = World::new();
    let t = w.rsa_token(&claims(RSA_ISS));
    let parts: Vec<&str> = t.split('.').collect();
    let admin = with(claims(RSA_ISS), "sub", json!("admin"));
    let forged_payload = b64(serde_json::to_string(&admin).unwrap().as_bytes());
    let t2 = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(err(w.verify("rsa", &t2)), LoginError::BadSignature);
    // Same header meaning, different bytes.
    let h2 = b64(br#"{"typ":"JWT","alg":"RS256"}"#);
    let t3 = format!("{}.{}.{}", h2, parts[1], parts[2]);
    assert_eq!(err(w.verify("rsa", &t3)), LoginError::BadSignature);
    // A payload re-encoded with a trailing space (still valid JSON).
    let mut spaced = serde_json::to_string(&claims(RSA_ISS)).unwrap();
    spaced.push(' ');
    let t4 = format!("{}.{}.{}", parts[0], b64(spaced.as_bytes()), parts[2]);
    assert_eq!(err(w.verify("rsa", &t4)), LoginError::BadSignature);
}

#[test]
fn a_key_from_another_issuer_does_not_verify() {
    let w = World::new();
    // Issuer B's key, issuer A's iss, presented to A.
    let t = token(&w.rsa_b, &header("RS256"), &claims(RSA_ISS));
    assert_eq!(err(w.verify("rsa", &t)), LoginError::BadSignature);
    // A genuine token of issuer B presented as issuer A.
    let t = token(&w.rsa_b, &header("RS256"), &claims(OTHER_ISS));
    assert!(w.verify("other", &t).is_ok());
    assert_eq!(err(w.verify("rsa", &t)), LoginError::BadSignature);
    // A genuine token of issuer A presented as issuer B.
    let t = w.rsa_token(&claims(RSA_ISS));
    assert_eq!(err(w.verify("other", &t)), LoginError::BadSignature);
    // Issuer A's key, claiming to be issuer B: signature fails at B.
    let t = w.rsa_token(&claims(OTHER_ISS));
    assert_eq!(err(w.verify("other", &t)), LoginError::BadSignature);
    // The jwks issuer shares the RSA key with "rsa", but checks its own iss.
    let t = token(
        &w.rsa,
        &json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims(RSA_ISS),
    );
    assert_eq!(err(w.verify("jwks", &t)), LoginError::InvalidIssuer);
}

#[test]
fn an_unknown_issuer_name_is_refused() {
    let w = World::new();
    let t = w.rsa_token(&claims(RSA_ISS));
    assert_eq!(err(w.verify("nope", &t)), LoginError::UnknownIssuer);
    assert_eq!(err(w.verify("", &t)), LoginError::UnknownIssuer);
    assert_eq!(err(w.verify("RSA", &t)), LoginError::UnknownIssuer);
}

// ---------------------------------------------------------------------------
// 7. Times

#[test]
fn expiry_is_checked_with_the_leeway() {
    let w = World::new();
    let at = |exp: i64| {
        w.rsa_token(&with(
            with(claims(RSA_ISS), "exp", json!(exp)),
            "iat",
            json!(exp - 600),
        ))
    };
    assert!(w.verify("rsa", &at(ts() + 1)).is_ok());
    assert!(w.verify("rsa", &at(ts())).is_ok(), "inside the leeway");
    assert!(w.verify("rsa", &at(ts() - 59)).is_ok(), "inside the leeway");
    let e = err(w.verify("rsa", &at(ts() - 60)));
    assert_eq!(e, LoginError::Expired);
    assert_eq!(
        e.to_string(),
        "error validating token: invalid expiration time (exp) claim: token is expired"
    );
    assert_eq!(err(w.verify("rsa", &at(ts() - 3600))), LoginError::Expired);
    assert_eq!(err(w.verify("rsa", &at(600))), LoginError::Expired);
    // With no leeway.
    let mut c = w.configs[0].clone();
    c.leeway_secs = 0;
    let strict = leash_attest::Issuers::load(&[c]).unwrap();
    assert!(strict.verify("rsa", &at(ts() + 1), now()).is_ok());
    assert_eq!(
        strict.verify("rsa", &at(ts()), now()).unwrap_err(),
        LoginError::Expired
    );
    // The injected time is what counts, not the system clock.
    let t = at(ts() + 300);
    assert!(
        w.issuers
            .verify("rsa", &t, now() + Duration::seconds(359))
            .is_ok()
    );
    assert_eq!(
        w.issuers
            .verify("rsa", &t, now() + Duration::seconds(360))
            .unwrap_err(),
        LoginError::Expired
    );
}

#[test]
fn not_before_and_issued_at_in_the_future_are_refused() {
    let w = World::new();
    let c = |nbf: i64, iat: i64| {
        let mut v = claims(RSA_ISS);
        v["nbf"] = json!(nbf);
        v["iat"] = json!(iat);
        w.rsa_token(&v)
    };
    assert!(
        w.verify("rsa", &c(ts() + 60, ts())).is_ok(),
        "nbf inside the leeway"
    );
    let e = err(w.verify("rsa", &c(ts() + 61, ts())));
    assert_eq!(e, LoginError::NotYetValid);
    assert_eq!(
        e.to_string(),
        "error validating token: invalid not before (nbf) claim: token not yet valid"
    );
    assert_eq!(
        err(w.verify("rsa", &c(ts() + 86_400, ts()))),
        LoginError::NotYetValid
    );
    assert!(
        w.verify("rsa", &c(ts(), ts() + 60)).is_ok(),
        "iat inside the leeway"
    );
    let e = err(w.verify("rsa", &c(ts(), ts() + 61)));
    assert_eq!(e, LoginError::IssuedInFuture);
    assert_eq!(
        e.to_string(),
        "error validating token: invalid issued at (iat) claim: token issued in the future"
    );
    assert_eq!(
        err(w.verify("rsa", &c(ts(), ts() + 10 * 365 * 86_400))),
        LoginError::IssuedInFuture
    );
    // nbf and iat are optional.
    let v = without(without(claims(RSA_ISS), "nbf"), "iat");
    let r = w.verify("rsa", &w.rsa_token(&v)).unwrap();
    assert_eq!(r.issued_at, None);
}

#[test]
fn exp_must_be_present_and_numeric() {
    let w = World::new();
    let e = err(w.verify("rsa", &w.rsa_token(&without(claims(RSA_ISS), "exp"))));
    assert_eq!(e, LoginError::MissingClaim("exp".into()));
    for bad in [
        json!((ts() + 300).to_string()),
        json!(true),
        json!(null),
        json!([ts() + 300]),
        json!({"t": ts() + 300}),
        json!(-1),
        json!(1e20),
        json!(u64::MAX),
        json!(-0.5),
    ] {
        let e = err(w.verify(
            "rsa",
            &w.rsa_token(&with(claims(RSA_ISS), "exp", bad.clone())),
        ));
        assert_eq!(
            e,
            LoginError::InvalidClaim("expiration time (exp)"),
            "{bad}"
        );
    }
    for (name, what) in [("nbf", "not before (nbf)"), ("iat", "issued at (iat)")] {
        let e = err(w.verify(
            "rsa",
            &w.rsa_token(&with(claims(RSA_ISS), name, json!(ts().to_string()))),
        ));
        assert_eq!(e, LoginError::InvalidClaim(what));
    }
    // RFC 7519 NumericDate may be fractional; fractions never extend validity.
    let v = w
        .verify(
            "rsa",
            &w.rsa_token(&with(
                claims(RSA_ISS),
                "exp",
                json!((ts() + 300) as f64 + 0.9),
            )),
        )
        .unwrap();
    assert_eq!(v.expires_at.timestamp(), ts() + 300);
    assert_eq!(
        err(w.verify(
            "rsa",
            &w.rsa_token(&with(
                claims(RSA_ISS),
                "exp",
                json!((ts() - 60) as f64 + 0.9)
            ))
        )),
        LoginError::Expired
    );
    assert_eq!(
        err(w.verify(
            "rsa",
            &w.rsa_token(&with(
                claims(RSA_ISS),
                "nbf",
                json!((ts() + 60) as f64 + 0.1)
            ))
        )),
        LoginError::NotYetValid
    );
}

#[test]
fn extreme_injected_times_fail_closed() {
    let w = World::new();
    let t = w.rsa_token(&claims(RSA_ISS));
    let max = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let min = chrono::DateTime::<chrono::Utc>::MIN_UTC;
    assert!(w.issuers.verify("rsa", &t, max).is_err());
    assert!(w.issuers.verify("rsa", &t, min).is_err());
}

// ---------------------------------------------------------------------------
// 8. Audience

#[test]
fn audience_must_name_this_broker() {
    let w = World::new();
    let aud = |v: Value| w.rsa_token(&with(claims(RSA_ISS), "aud", v));
    assert!(w.verify("rsa", &aud(json!("leash"))).is_ok());
    assert!(
        w.verify("rsa", &aud(json!(["other-service", "leash", "third"])))
            .is_ok()
    );
    assert!(w.verify("rsa", &aud(json!(["leash"]))).is_ok());
    let msg = "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience";
    let e = err(w.verify("rsa", &w.rsa_token(&without(claims(RSA_ISS), "aud"))));
    assert_eq!(e, LoginError::InvalidAudience);
    assert_eq!(e.to_string(), msg);
    for bad in [
        json!("other-service"),
        json!(["other-service"]),
        json!([]),
        json!("Leash"),
        json!("leash "),
        json!({"leash": true}),
        json!(["leash", 1]),
        json!([["leash"]]),
        json!(null),
        json!(1),
    ] {
        assert_eq!(
            err(w.verify("rsa", &aud(bad.clone()))),
            LoginError::InvalidAudience,
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------------------
// 9. Issuer

#[test]
fn issuer_must_match_exactly() {
    let w = World::new();
    for bad in [
        json!("https://rsa.example/"),
        json!("https://RSA.example"),
        json!("HTTPS://rsa.example"),
        json!("http://rsa.example"),
        json!("https://rsa.example.attacker.example"),
        json!(" https://rsa.example"),
        json!(["https://rsa.example"]),
        json!(null),
    ] {
        let e = err(w.verify(
            "rsa",
            &w.rsa_token(&with(claims(RSA_ISS), "iss", bad.clone())),
        ));
        assert_eq!(e, LoginError::InvalidIssuer, "{bad}");
        assert_eq!(
            e.to_string(),
            "error validating token: invalid issuer (iss) claim"
        );
    }
    assert_eq!(
        err(w.verify("rsa", &w.rsa_token(&without(claims(RSA_ISS), "iss")))),
        LoginError::InvalidIssuer
    );
}

// ---------------------------------------------------------------------------
// Subject, jti and required claims

#[test]
fn subject_must_be_a_non_empty_string() {
    let w = World::new();
    assert_eq!(
        err(w.verify("rsa", &w.rsa_token(&without(claims(RSA_ISS), "sub")))),
        LoginError::InvalidSubject
    );
    for bad in [json!(""), json!(42), json!(null), json!(["a"])] {
        assert_eq!(
            err(w.verify("rsa", &w.rsa_token(&with(claims(RSA_ISS), "sub", bad)))),
            LoginError::InvalidSubject
        );
    }
    assert_eq!(
        err(w.verify("rsa", &w.rsa_token(&with(claims(RSA_ISS), "jti", json!(7))))),
        LoginError::InvalidClaim("JWT ID (jti)")
    );
}

#[test]
fn configured_required_claims_must_be_present() {
    let w = World::new();
    let mut c = w.configs[0].clone();
    c.required_claims = vec!["repository_id".into()];
    let issuers = leash_attest::Issuers::load(&[c]).unwrap();
    let t = w.rsa_token(&claims(RSA_ISS));
    let e = issuers.verify("rsa", &t, now()).unwrap_err();
    assert_eq!(e, LoginError::MissingClaim("repository_id".into()));
    let t = w.rsa_token(&with(claims(RSA_ISS), "repository_id", json!(null)));
    assert!(issuers.verify("rsa", &t, now()).is_err());
    let t = w.rsa_token(&with(claims(RSA_ISS), "repository_id", json!(123)));
    assert!(issuers.verify("rsa", &t, now()).is_ok());
}

// ---------------------------------------------------------------------------
// 10, 11. Size, form and type confusion

#[test]
fn an_oversized_token_is_refused_before_parsing() {
    let w = World::new();
    let big = with(claims(RSA_ISS), "pad", json!("x".repeat(17 * 1024)));
    let t = w.rsa_token(&big);
    assert!(t.len() > MAX_JWT_BYTES);
    assert_eq!(err(w.verify("rsa", &t)), LoginError::TooLarge);
    // Garbage of the same size is refused for its size, not parsed.
    let junk = "a".repeat(17 * 1024);
    assert_eq!(err(w.verify("rsa", &junk)), LoginError::TooLarge);
    // Just under the cap still verifies.
    let pad = MAX_JWT_BYTES - w.rsa_token(&claims(RSA_ISS)).len() - 200;
    let t = w.rsa_token(&with(
        claims(RSA_ISS),
        "pad",
        json!("x".repeat(pad * 3 / 4)),
    ));
    assert!(t.len() <= MAX_JWT_BYTES);
    assert!(w.verify("rsa", &t).is_ok());
}

#[test]
fn only_compact_jws_is_accepted() {
    let w = World::new();
    let t = w.rsa_token(&claims(RSA_ISS));
    let p: Vec<&str> = t.split('.').collect();
    let two = format!("{}.{}", p[0], p[1]);
    assert_eq!(err(w.verify("rsa", &two)), LoginError::NotCompact);
    assert_eq!(
        LoginError::NotCompact.to_string(),
        "error validating token: token is malformed: compact JWS format must have three parts"
    );
    // JWE compact: five parts.
    let jwe_header = b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    let jwe = format!(
        "{jwe_header}.{}.{}.{}.{}",
        b64(b"key"),
        b64(b"iv"),
        p[1],
        b64(b"tag")
    );
    assert_eq!(err(w.verify("rsa", &jwe)), LoginError::NotCompact);
    // Four parts, extra dots, empty.
    assert_eq!(
        err(w.verify("rsa", &format!("{t}.x"))),
        LoginError::NotCompact
    );
    assert_eq!(err(w.verify("rsa", "")), LoginError::NotCompact);
    assert_eq!(err(w.verify("rsa", "..")), LoginError::Malformed);
    // JWS JSON serialisations (general and flattened).
    let flat = json!({"protected": p[0], "payload": p[1], "signature": p[2]}).to_string();
    assert_eq!(err(w.verify("rsa", &flat)), LoginError::NotCompact);
    let general = json!({"payload": p[1], "signatures": [{"protected": p[0], "signature": p[2]}]})
        .to_string();
    assert!(matches!(
        err(w.verify("rsa", &general)),
        LoginError::NotCompact | LoginError::Malformed
    ));
    // A nested JWT (cty) inside a JWS.
    let nested = token(&w.rsa, &json!({"alg": "RS256", "cty": "JWT"}), &json!(t));
    assert_eq!(
        err(w.verify("rsa", &nested)),
        LoginError::ForbiddenHeader("cty")
    );
    // Whitespace around the token.
    assert_eq!(
        err(w.verify("rsa", &format!(" {t}"))),
        LoginError::Malformed
    );
    assert!(matches!(
        err(w.verify("rsa", &format!("{t}\n"))),
        LoginError::Malformed | LoginError::BadSignature
    ));
}

#[test]
fn malformed_headers_and_payloads_are_refused() {
    let w = World::new();
    let good = w.rsa_token(&claims(RSA_ISS));
    let p: Vec<&str> = good.split('.').collect();
    for h in [
        b64(b"not json"),
        b64(b"[]"),
        b64(br#""RS256""#),
        b64(br#"{"alg":"RS256"} trailing"#),
        b64(br#"{"typ":"JWT"}"#),
        b64(br#"{"alg":256}"#),
        b64(br#"{"alg":"RS256","typ":1}"#),
        "!!!".to_string(),
        format!("{}=", p[0]),
    ] {
        assert_eq!(
            err(w.verify("rsa", &format!("{h}.{}.{}", p[1], p[2]))),
            LoginError::Malformed,
            "{h}"
        );
    }
    // Payloads that are validly signed but not a claims object.
    for payload in [json!([1, 2]), json!("sub"), json!(null), json!(1800000000)] {
        let t = token(&w.rsa, &header("RS256"), &payload);
        assert_eq!(err(w.verify("rsa", &t)), LoginError::Malformed);
    }
    let input = format!("{}.{}", p[0], b64(b"\xff\xfe not utf-8"));
    let t = format!("{input}.{}", b64(&w.rsa.sign("RS256", input.as_bytes())));
    assert_eq!(err(w.verify("rsa", &t)), LoginError::Malformed);
}

#[test]
fn duplicate_json_keys_are_refused() {
    let w = World::new();
    // "Which one wins?" — neither: both header and payload duplicates fail.
    let claims_text = serde_json::to_string(&claims(RSA_ISS)).unwrap();
    let t = token_raw(
        &w.rsa,
        "RS256",
        r#"{"alg":"RS256","alg":"none"}"#,
        &claims_text,
    );
    assert_eq!(err(w.verify("rsa", &t)), LoginError::Malformed);
    let t = token_raw(
        &w.rsa,
        "RS256",
        r#"{"alg":"none","alg":"RS256"}"#,
        &claims_text,
    );
    assert_eq!(err(w.verify("rsa", &t)), LoginError::Malformed);
    let dup = format!(
        "{},\"sub\":\"admin\"}}",
        &claims_text[..claims_text.len() - 1]
    );
    let t = token_raw(&w.rsa, "RS256", r#"{"alg":"RS256"}"#, &dup);
    assert_eq!(err(w.verify("rsa", &t)), LoginError::Malformed);
    let dup = format!(
        "{},\"exp\":9999999999}}",
        &claims_text[..claims_text.len() - 1]
    );
    let t = token_raw(&w.rsa, "RS256", r#"{"alg":"RS256"}"#, &dup);
    assert_eq!(err(w.verify("rsa", &t)), LoginError::Malformed);
    let dup = format!(
        "{},\"\\u0073ub\":\"admin\"}}",
        &claims_text[..claims_text.len() - 1]
    );
    let t = token_raw(&w.rsa, "RS256", r#"{"alg":"RS256"}"#, &dup);
    assert_eq!(err(w.verify("rsa", &t)), LoginError::Malformed);
}

// ---------------------------------------------------------------------------
// Nothing leaks

#[test]
fn errors_and_debug_output_never_hold_the_token_or_claim_values() {
    let w = World::new();
    // World::verify asserts this for every refusal in this file; here also
    // for the success path and the summaries.
    let t = w.rsa_token(&with(
        claims(RSA_ISS),
        "note",
        json!("line\n{\"forged\":1}\u{1b}[2J"),
    ));
    let v = w.verify("rsa", &t).unwrap();
    let dbg = format!("{v:?}");
    assert!(
        !dbg.contains(&t) && !dbg.contains(CANARY) && !dbg.contains(JTI),
        "{dbg}"
    );
    assert!(dbg.contains("team"), "claim names are shown: {dbg}");
    let s = v.summary();
    assert_eq!(s["issuer"], "rsa");
    assert_eq!(s["iss"], RSA_ISS);
    assert_eq!(s["sub"], "workload-1");
    assert_eq!(s["exp"], ts() + 300);
    assert_eq!(s["iat"], ts());
    assert_eq!(s["jti_present"], true);
    let text = s.to_string();
    assert!(!text.contains(JTI) && !text.contains(CANARY) && !text.contains(&t));
    let s = v.summary_with(&["team", "note", "jti", "missing", "aud"]);
    assert_eq!(s["claims"]["team"], CANARY);
    assert!(s["claims"].get("jti").is_none() && s["claims"].get("missing").is_none());
    let note = s["claims"]["note"].as_str().unwrap();
    assert!(
        !note.contains('\n') && !note.contains('"') && !note.contains('\u{1b}'),
        "{note}"
    );
    assert!(!s.to_string().contains(JTI));
    // Long claim values are capped.
    let t = w.rsa_token(&with(claims(RSA_ISS), "long", json!("y".repeat(5000))));
    let s = w.verify("rsa", &t).unwrap().summary_with(&["long"]);
    assert!(s["claims"]["long"].as_str().unwrap().chars().count() <= 257);
    // Debug of the issuer set shows no key material.
    let d = format!("{:?}", w.issuers);
    assert!(d.contains("rsa") && !d.contains("MII"), "{d}");
    // Error codes and status.
    let e = err(w.verify("rsa", &w.rsa_token(&without(claims(RSA_ISS), "sub"))));
    assert_eq!(e.status(), 400);
    assert_eq!(e.code(), "invalid_sub");
}

#[test]
fn names_lists_the_configured_issuers() {
    let w = World::new();
    assert_eq!(
        w.issuers.names(),
        vec!["ec", "ed", "jwks", "other", "p384", "rsa"]
    );
}
