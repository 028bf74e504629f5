//! Signature algorithms and verification keys: parsing PEM
//! (SubjectPublicKeyInfo, PKCS#1 RSA) and JWK sets, binding every key to the
//! algorithm family of its key type, and verifying signatures with `ring`.
//!
//! Must never happen: a key used with an algorithm outside its family (an
//! RSA key as an HMAC secret, a P-256 key for ES384), a symmetric or private
//! key accepted as a verification key, or a key's bytes in an error.

use std::fmt;

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::encoding::{b64url_decode, parse_value};

/// The signature algorithms Leash can verify. There is no `none` and no
/// HMAC: they cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// Parses the JOSE name, exactly (case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The key type this algorithm needs.
    pub(crate) fn key_kind(self) -> KeyKind {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::P256,
            Algorithm::ES384 => KeyKind::P384,
            Algorithm::EdDSA => KeyKind::Ed25519,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key's type, which fixes the algorithms it may be used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key (RS256/RS384/RS512/PS256/PS384/PS512)",
            KeyKind::P256 => "a P-256 key (ES256)",
            KeyKind::P384 => "a P-384 key (ES384)",
            KeyKind::Ed25519 => "an Ed25519 key (EdDSA)",
        }
    }
}

/// Public key material, in the form `ring` verifies with.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed point (0x04 ‖ X ‖ Y), 65 bytes.
    P256(Vec<u8>),
    /// Uncompressed point, 97 bytes.
    P384(Vec<u8>),
    /// 32 bytes.
    Ed25519(Vec<u8>),
}

impl KeyMaterial {
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            KeyMaterial::Rsa { .. } => KeyKind::Rsa,
            KeyMaterial::P256(_) => KeyKind::P256,
            KeyMaterial::P384(_) => KeyKind::P384,
            KeyMaterial::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// Checks sizes and ranges once, at load time.
    fn validate(self) -> Result<Self, String> {
        match &self {
            KeyMaterial::Rsa { n, e } => {
                let bits = bit_len(n);
                if !(2048..=8192).contains(&bits) {
                    return Err(format!(
                        "RSA modulus is {bits} bits; 2048 to 8192 bits are accepted"
                    ));
                }
                // ring accepts 3 ..= 2^33 - 1, odd.
                let e_val = e.iter().try_fold(0u64, |acc, b| {
                    if acc >> 56 != 0 {
                        None
                    } else {
                        Some((acc << 8) | u64::from(*b))
                    }
                });
                match e_val {
                    Some(v) if (3..(1u64 << 33)).contains(&v) && v % 2 == 1 => {}
                    _ => return Err("RSA public exponent is out of range".into()),
                }
            }
            KeyMaterial::P256(p) if p.len() != 65 || p.first() != Some(&4) => {
                return Err("P-256 public key must be an uncompressed point".into());
            }
            KeyMaterial::P384(p) if p.len() != 97 || p.first() != Some(&4) => {
                return Err("P-384 public key must be an uncompressed point".into());
            }
            KeyMaterial::Ed25519(p) if p.len() != 32 => {
                return Err("Ed25519 public key must be 32 bytes".into());
            }
            _ => {}
        }
        Ok(self)
    }

    /// Verifies `sig` over `msg` with `alg`. Returns false if `alg` does not
    /// belong to this key's family.
    pub(crate) fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        match (self, alg) {
            (KeyMaterial::Rsa { n, e }, _) => {
                let params: &signature::RsaParameters = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            (KeyMaterial::P256(p), Algorithm::ES256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p)
                    .verify(msg, sig)
                    .is_ok()
            }
            (KeyMaterial::P384(p), Algorithm::ES384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, p)
                    .verify(msg, sig)
                    .is_ok()
            }
            (KeyMaterial::Ed25519(p), Algorithm::EdDSA) => {
                UnparsedPublicKey::new(&signature::ED25519, p)
                    .verify(msg, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

fn bit_len(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(b) => n.len() * 8 - b.leading_zeros() as usize,
    }
}

fn strip_leading_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b[start..].to_vec()
}

/// One verification key as configured.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    /// The JWK's `kid`, if it had one. PEM keys have none.
    pub(crate) kid: Option<String>,
    /// The JWK's own `alg`, if it had one: the key is then bound to exactly
    /// that algorithm.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) material: KeyMaterial,
}

impl VerifyingKey {
    /// Whether this key may verify `alg`: same family, and the JWK's own
    /// `alg` (if any) equals it.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.material.kind() == alg.key_kind() && self.alg.is_none_or(|a| a == alg)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field(
                "kid",
                &self
                    .kid
                    .as_deref()
                    .map(|k| leash_domain::audit::escape_untrusted(k, 64)),
            )
            .field("alg", &self.alg)
            .field("kind", &self.material.kind())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// PEM and DER

/// A PEM block: its label and decoded body (wiped on drop).
pub(crate) type PemBlock = (String, Zeroizing<Vec<u8>>);

/// The decoded bodies of the PEM blocks in `text`, with their labels. The
/// bodies are wiped on drop: a misplaced private key may be among them.
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut current: Option<(String, Zeroizing<String>)> = None;
    for line in text.lines() {
        let line = line.trim();
        match &mut current {
            None => {
                if let Some(rest) = line.strip_prefix("-----BEGIN ") {
                    let label = rest
                        .strip_suffix("-----")
                        .ok_or_else(|| "malformed PEM BEGIN line".to_string())?;
                    // Sized up front so the body is never reallocated (and copied).
                    current = Some((
                        label.to_string(),
                        Zeroizing::new(String::with_capacity(text.len())),
                    ));
                }
            }
            Some((label, body)) => {
                if let Some(rest) = line.strip_prefix("-----END ") {
                    if rest.strip_suffix("-----") != Some(label.as_str()) {
                        return Err("PEM END line does not match its BEGIN line".into());
                    }
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(body.as_bytes())
                        .map_err(|_| "PEM body is not valid base64".to_string())?;
                    out.push((std::mem::take(label), Zeroizing::new(der)));
                    current = None;
                } else if line.contains(':') {
                    return Err("encrypted or annotated PEM blocks are not supported".into());
                } else {
                    body.push_str(line);
                }
            }
        }
    }
    if current.is_some() {
        return Err("PEM block has no END line".into());
    }
    Ok(out)
}

/// Reads one DER TLV: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Reads one TLV with the expected tag.
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = der_tlv(input)?;
    (t == tag).then_some((body, rest))
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Parses PKCS#1 `RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }`.
fn parse_pkcs1_rsa(der: &[u8]) -> Option<KeyMaterial> {
    let (seq, rest) = der_expect(der, TAG_SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, seq) = der_expect(seq, TAG_INTEGER)?;
    let (e, seq) = der_expect(seq, TAG_INTEGER)?;
    if !seq.is_empty()
        || n.first().is_none_or(|b| b & 0x80 != 0)
        || e.first().is_none_or(|b| b & 0x80 != 0)
    {
        return None;
    }
    Some(KeyMaterial::Rsa {
        n: strip_leading_zeros(n),
        e: strip_leading_zeros(e),
    })
}

/// Parses an X.509 SubjectPublicKeyInfo.
fn parse_spki(der: &[u8]) -> Result<KeyMaterial, String> {
    let bad = || "not a valid SubjectPublicKeyInfo".to_string();
    let (spki, rest) = der_expect(der, TAG_SEQUENCE).ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let (alg_id, spki) = der_expect(spki, TAG_SEQUENCE).ok_or_else(bad)?;
    let (bits, spki) = der_expect(spki, TAG_BIT_STRING).ok_or_else(bad)?;
    if !spki.is_empty() {
        return Err(bad());
    }
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(bad()),
    };
    let (oid, params) = der_expect(alg_id, TAG_OID).ok_or_else(bad)?;
    if oid == OID_RSA_ENCRYPTION {
        if !(params.is_empty() || params == [TAG_NULL, 0]) {
            return Err(bad());
        }
        parse_pkcs1_rsa(key).ok_or_else(|| "not a valid RSA public key".to_string())
    } else if oid == OID_EC_PUBLIC_KEY {
        let (curve, rest) = der_expect(params, TAG_OID).ok_or_else(bad)?;
        if !rest.is_empty() {
            return Err(bad());
        }
        if curve == OID_P256 {
            Ok(KeyMaterial::P256(key.to_vec()))
        } else if curve == OID_P384 {
            Ok(KeyMaterial::P384(key.to_vec()))
        } else {
            Err("unsupported elliptic curve (P-256 and P-384 are supported)".into())
        }
    } else if oid == OID_ED25519 {
        if !params.is_empty() {
            return Err(bad());
        }
        Ok(KeyMaterial::Ed25519(key.to_vec()))
    } else {
        Err("unsupported public key type (RSA, P-256, P-384 and Ed25519 are supported)".into())
    }
}

/// Parses every public key in a PEM file. Private keys, certificates and
/// anything else are refused.
pub(crate) fn parse_pem_keys(text: &str) -> Result<Vec<KeyMaterial>, String> {
    let blocks = pem_blocks(text)?;
    if blocks.is_empty() {
        return Err("no PEM block found".into());
    }
    let mut out = Vec::new();
    for (label, der) in blocks {
        let key = match label.as_str() {
            "PUBLIC KEY" => parse_spki(&der)?,
            "RSA PUBLIC KEY" => {
                parse_pkcs1_rsa(&der).ok_or_else(|| "not a valid RSA public key".to_string())?
            }
            l if l.contains("PRIVATE KEY") => {
                return Err("holds a private key; configure the public key only".into());
            }
            "CERTIFICATE" => {
                return Err(
                    "certificates are not supported; extract the public key (PUBLIC KEY)".into(),
                );
            }
            _ => return Err("unsupported PEM block; expected PUBLIC KEY".into()),
        };
        out.push(key.validate()?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// JWK sets

/// Members that only private or symmetric keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn jwk_str<'a>(
    jwk: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("member \"{name}\" must be a string")),
    }
}

fn jwk_b64(jwk: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = jwk_str(jwk, name)?.ok_or_else(|| format!("member \"{name}\" is missing"))?;
    b64url_decode(s).ok_or_else(|| format!("member \"{name}\" is not base64url without padding"))
}

/// Parses one JWK (an object from a JWK set).
fn parse_jwk(jwk: &Value) -> Result<VerifyingKey, String> {
    let jwk = jwk.as_object().ok_or("not a JSON object")?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err("holds private or symmetric key material; publish public keys only".into());
    }
    if let Some(u) = jwk_str(jwk, "use")?
        && u != "sig"
    {
        return Err("\"use\" must be \"sig\"".into());
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ok = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !ok {
            return Err("\"key_ops\" must include \"verify\"".into());
        }
    }
    let kid = match jwk_str(jwk, "kid")? {
        Some("") => return Err("\"kid\" is empty".into()),
        Some(k) => Some(k.to_string()),
        None => None,
    };
    let alg = match jwk_str(jwk, "alg")? {
        None => None,
        Some(a) => Some(Algorithm::parse(a).ok_or_else(|| {
            format!(
                "\"alg\" {} is not a supported signature algorithm",
                leash_domain::audit::escape_untrusted(a, 32)
            )
        })?),
    };
    let kty = jwk_str(jwk, "kty")?.ok_or("member \"kty\" is missing")?;
    let material = match kty {
        "RSA" => KeyMaterial::Rsa {
            n: strip_leading_zeros(&jwk_b64(jwk, "n")?),
            e: strip_leading_zeros(&jwk_b64(jwk, "e")?),
        },
        "EC" => {
            let crv = jwk_str(jwk, "crv")?.ok_or("member \"crv\" is missing")?;
            let (len, p256) = match crv {
                "P-256" => (32, true),
                "P-384" => (48, false),
                _ => return Err("unsupported curve (P-256 and P-384 are supported)".into()),
            };
            let x = jwk_b64(jwk, "x")?;
            let y = jwk_b64(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinates have the wrong length".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if p256 {
                KeyMaterial::P256(point)
            } else {
                KeyMaterial::P384(point)
            }
        }
        "OKP" => match jwk_str(jwk, "crv")? {
            Some("Ed25519") => KeyMaterial::Ed25519(jwk_b64(jwk, "x")?),
            _ => return Err("unsupported OKP curve (Ed25519 is supported)".into()),
        },
        "oct" => return Err("symmetric (oct) keys are never accepted".into()),
        _ => return Err("unsupported key type (RSA, EC and OKP are supported)".into()),
    };
    let material = material.validate()?;
    if let Some(a) = alg
        && a.key_kind() != material.kind()
    {
        return Err(format!(
            "\"alg\" {a} does not fit the key type, {}",
            material.kind().describe()
        ));
    }
    Ok(VerifyingKey { kid, alg, material })
}

/// Parses a JWK set document.
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyingKey>, String> {
    // Parse errors are not shown: serde messages can quote the input.
    let doc = parse_value(bytes).ok_or("not valid JSON (or has duplicate keys)")?;
    let keys = doc
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or("not a JWK set: expected an object with a \"keys\" array")?;
    keys.iter()
        .enumerate()
        .map(|(i, k)| parse_jwk(k).map_err(|e| format!("key #{i}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!(Algorithm::parse("RS256"), Some(Algorithm::RS256));
        assert_eq!(Algorithm::parse("rs256"), None);
        assert_eq!(Algorithm::parse("none"), None);
        assert_eq!(Algorithm::parse("HS256"), None);
        assert_eq!(Algorithm::parse("ES512"), None);
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn der_lengths_are_bounded() {
        assert!(der_tlv(&[0x30, 0x84, 1, 0, 0, 0]).is_none());
        assert!(der_tlv(&[0x30, 0x80]).is_none());
        assert!(der_tlv(&[0x30, 0x05, 1]).is_none());
        assert_eq!(
            der_tlv(&[0x02, 0x01, 7, 9]),
            Some((0x02, &[7u8][..], &[9u8][..]))
        );
    }

    #[test]
    fn pem_refuses_private_keys_and_junk() {
        let pk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = match parse_pem_keys(pk) {
            Err(e) => e,
            Ok(_) => panic!("private key accepted"),
        };
        assert!(e.contains("private key") && !e.contains("AAAA"));
        assert!(parse_pem_keys("hello").is_err());
        assert!(parse_pem_keys("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
        assert!(parse_pem_keys("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END X-----\n").is_err());
    }

    #[test]
    fn jwk_private_and_symmetric_members_are_refused() {
        let e = parse_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("private or symmetric") && !e.contains("c2VjcmV0"));
        let e =
            parse_jwks(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"SECRETD"}]}"#)
                .err()
                .unwrap_or_default();
        assert!(!e.is_empty() && !e.contains("SECRETD"));
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct"}]}"#).is_err());
        assert!(parse_jwks(br#"{"keys":{}}"#).is_err());
        assert!(parse_jwks(br#"{"keys":[],"keys":[]}"#).is_err());
    }
}
