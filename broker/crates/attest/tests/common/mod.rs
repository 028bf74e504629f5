//! Test helpers: keys (generated at test time with ring, or the TEST-ONLY
//! RSA/P-384 fixtures under `tests/fixtures`), issuer configurations written
//! to a temporary directory, and a hand-rolled token builder that can
//! produce any malformed or malicious token.

#![allow(dead_code)]
// Test-only helpers: a failure here is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeZone, Utc};
use leash_attest::{IssuerConfig, Issuers, LoginError, VerifiedJwt};
use ring::rand::SystemRandom;
use ring::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};

/// The injected time every test uses.
pub fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

pub fn ts() -> i64 {
    now().timestamp()
}

/// A claim value planted in tokens to prove it never leaks.
pub const CANARY: &str = "CANARY-claim-value-7f3a9";
/// A jti planted in tokens to prove it never leaks.
pub const JTI: &str = "JTI-value-do-not-log-91c2";

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The DER body of a one-block PEM file.
pub fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

pub fn spki_pem(der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

pub enum Signer {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair, Vec<u8>),
    P384(EcdsaKeyPair),
    Ed(Ed25519KeyPair, Vec<u8>),
}

impl Signer {
    pub fn rsa(fixture_name: &str) -> Signer {
        Signer::Rsa(RsaKeyPair::from_pkcs8(&pem_der(&fixture(fixture_name))).unwrap())
    }

    pub fn p256() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let der = pkcs8.as_ref().to_vec();
        Signer::P256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).unwrap(),
            der,
        )
    }

    pub fn p384() -> Signer {
        let rng = SystemRandom::new();
        let der = pem_der(&fixture("test-only-p384.key.pem"));
        Signer::P384(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &der, &rng).unwrap(),
        )
    }

    pub fn ed() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let der = pkcs8.as_ref().to_vec();
        Signer::Ed(Ed25519KeyPair::from_pkcs8(&der).unwrap(), der)
    }

    /// SubjectPublicKeyInfo PEM of the public key.
    pub fn public_pem(&self) -> String {
        match self {
            Signer::Rsa(_) => panic!("use the RSA fixture's .pub.pem"),
            Signer::P256(k, _) => {
                let mut der = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
                der.extend_from_slice(k.public_key().as_ref());
                spki_pem(&der)
            }
            Signer::P384(k) => {
                let mut der = hex("3076301006072a8648ce3d020106052b81040022036200");
                der.extend_from_slice(k.public_key().as_ref());
                spki_pem(&der)
            }
            Signer::Ed(k, _) => {
                let mut der = hex("302a300506032b6570032100");
                der.extend_from_slice(k.public_key().as_ref());
                spki_pem(&der)
            }
        }
    }

    /// The public key as a JWK (no kid, no alg).
    pub fn jwk(&self) -> Value {
        match self {
            Signer::Rsa(k) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Signer::P256(k, _) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            Signer::P384(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-384", "x": b64(&p[1..49]), "y": b64(&p[49..97])})
            }
            Signer::Ed(k, _) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    /// Signs `input` as `alg` would.
    pub fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Rsa(k) => {
                let enc: &dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(enc, &rng, input, &mut sig).unwrap();
                sig
            }
            Signer::P256(k, _) | Signer::P384(k) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
            Signer::Ed(k, _) => k.sign(input).as_ref().to_vec(),
        }
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `header.payload` from JSON values.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(serde_json::to_string(header).unwrap().as_bytes()),
        b64(serde_json::to_string(claims).unwrap().as_bytes())
    )
}

/// A token with `header` and `claims`, signed by `signer` as `header.alg`.
pub fn token(signer: &Signer, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let alg = header["alg"].as_str().unwrap_or("RS256");
    let sig = signer.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// A token from raw header and payload JSON text (for duplicate keys).
pub fn token_raw(signer: &Signer, alg: &str, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = signer.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

pub fn header(alg: &str) -> Value {
    json!({"alg": alg, "typ": "JWT"})
}

/// Good claims for `iss`, audience `leash`.
pub fn claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "aud": "leash",
        "sub": "workload-1",
        "iat": ts(),
        "nbf": ts(),
        "exp": ts() + 300,
        "jti": JTI,
        "team": CANARY,
    })
}

pub fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

pub fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

pub const RSA_ISS: &str = "https://rsa.example";
pub const EC_ISS: &str = "https://ec.example";
pub const ED_ISS: &str = "https://ed.example";
pub const P384_ISS: &str = "https://p384.example";
pub const JWKS_ISS: &str = "https://jwks.example";
pub const OTHER_ISS: &str = "https://other.example";

/// Every key and issuer the tests use.
pub struct World {
    pub dir: tempfile::TempDir,
    pub rsa: Signer,
    pub rsa_b: Signer,
    pub ec: Signer,
    pub ed: Signer,
    pub p384: Signer,
    pub jwks_ec: Signer,
    pub issuers: Issuers,
    pub configs: Vec<IssuerConfig>,
}

pub fn cfg(name: &str, iss: &str, algs: &[&str]) -> IssuerConfig {
    IssuerConfig {
        name: name.into(),
        issuer: iss.into(),
        audiences: vec!["leash".into()],
        algorithms: algs.iter().map(|s| s.to_string()).collect(),
        jwks_file: None,
        public_key_files: vec![],
        leeway_secs: 60,
        required_claims: vec![],
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let rsa = Signer::rsa("test-only-rsa-a.key.pem");
        let rsa_b = Signer::rsa("test-only-rsa-b.key.pem");
        let ec = Signer::p256();
        let ed = Signer::ed();
        let p384 = Signer::p384();
        let jwks_ec = Signer::p256();

        let ec_pem = write(dir.path(), "ec.pem", &ec.public_pem());
        let ed_pem = write(dir.path(), "ed.pem", &ed.public_pem());
        let mut rsa_jwk = rsa.jwk();
        rsa_jwk["kid"] = json!("rsa-1");
        rsa_jwk["use"] = json!("sig");
        let mut ec_jwk = jwks_ec.jwk();
        ec_jwk["kid"] = json!("ec-1");
        ec_jwk["alg"] = json!("ES256");
        let jwks = write(
            dir.path(),
            "jwks.json",
            &json!({"keys": [rsa_jwk, ec_jwk]}).to_string(),
        );

        let mut c_rsa = cfg(
            "rsa",
            RSA_ISS,
            &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
        );
        c_rsa.public_key_files = vec![fixture("test-only-rsa-a.pub.pem")];
        let mut c_ec = cfg("ec", EC_ISS, &["ES256"]);
        c_ec.public_key_files = vec![ec_pem];
        let mut c_ed = cfg("ed", ED_ISS, &["EdDSA"]);
        c_ed.public_key_files = vec![ed_pem];
        let mut c_p384 = cfg("p384", P384_ISS, &["ES384"]);
        c_p384.public_key_files = vec![fixture("test-only-p384.pub.pem")];
        let mut c_jwks = cfg("jwks", JWKS_ISS, &["RS256", "ES256"]);
        c_jwks.jwks_file = Some(jwks);
        let mut c_other = cfg("other", OTHER_ISS, &["RS256"]);
        c_other.public_key_files = vec![fixture("test-only-rsa-b.pub.pem")];

        let configs = vec![c_rsa, c_ec, c_ed, c_p384, c_jwks, c_other];
        let issuers = Issuers::load(&configs).unwrap();
        World {
            dir,
            rsa,
            rsa_b,
            ec,
            ed,
            p384,
            jwks_ec,
            issuers,
            configs,
        }
    }

    pub fn verify(&self, issuer: &str, jwt: &str) -> Result<VerifiedJwt, LoginError> {
        let r = self.issuers.verify(issuer, jwt, now());
        if let Err(e) = &r {
            assert_no_leak(jwt, e);
        }
        r
    }

    pub fn rsa_token(&self, claims: &Value) -> String {
        token(&self.rsa, &header("RS256"), claims)
    }
}

/// An error never carries the token, its parts, or the planted claim values.
pub fn assert_no_leak(jwt: &str, e: &LoginError) {
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(CANARY), "claim value leaked: {shown}");
        assert!(!shown.contains(JTI), "jti leaked: {shown}");
        assert!(!shown.contains("workload-1"), "subject leaked: {shown}");
        if jwt.len() >= 16 {
            assert!(!shown.contains(jwt), "token leaked: {shown}");
        }
        for part in jwt.split('.') {
            if part.len() >= 16 {
                assert!(!shown.contains(part), "token part leaked: {shown}");
            }
        }
        assert!(shown.len() < 300, "error too long: {shown}");
    }
}

pub fn err(r: Result<VerifiedJwt, LoginError>) -> LoginError {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e,
    }
}
