//! Random credentials and keyed hashes.
//!
//! Tokens and lease ids carry 256 random bits, are shown once to their
//! holder and are stored only as HMAC-SHA256 digests under the broker's hash
//! key, with a domain-separation label so a digest of one kind can never
//! stand for another (a lease's storage key puts its issue time in front of
//! 192 bits of its digest: see [`KeyedHasher::lease`]). Digests are compared
//! in constant time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

type HmacSha256 = Hmac<Sha256>;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key material is shorter than 32 bytes.
    #[error("key must be at least 32 bytes, got {0}")]
    TooShort(usize),
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

/// A 32-byte digest (HMAC-SHA256 output). Not secret by itself, but
/// compared in constant time all the same.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(#[serde(with = "hex_bytes")] pub [u8; 32]);

impl Digest {
    /// The all-zero digest: the `prev` of the first audit event.
    pub const ZERO: Digest = Digest([0u8; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses lower- or upper-case hex of exactly 32 bytes.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// From a byte slice of exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({}…)", &self.to_hex()[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// A credential shown once to its holder: a broker token or a lease id.
/// Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretToken(String);

impl SecretToken {
    /// Wraps a presented credential.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that sends it to its holder.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// `n` random bytes from the operating system, base64url without padding.
pub fn random_b64(n: usize) -> Result<String, KeyError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
    let s = URL_SAFE_NO_PAD.encode(&buf);
    buf.zeroize();
    Ok(s)
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(buf)
}

/// Domain-separation labels for [`KeyedHasher`].
pub mod label {
    /// A broker token.
    pub const TOKEN: &str = "leash/token/v1";
    /// A lease id.
    pub const LEASE: &str = "leash/lease/v1";
    /// An operator token.
    pub const OPERATOR: &str = "leash/operator/v1";
    /// A link of the audit hash chain.
    pub const AUDIT_CHAIN: &str = "leash/audit-chain/v1";
    /// A sensitive field kept in the audit log only as a digest (a JWT id, a
    /// value an attacker sent).
    pub const AUDIT_FIELD: &str = "leash/audit-field/v1";
}

/// HMAC-SHA256 under the broker's hash key. The key never leaves this type;
/// its `Debug` is redacted and it is zeroised on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyedHasher {
    key: Vec<u8>,
}

impl fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedHasher(<redacted>)")
    }
}

impl KeyedHasher {
    /// A hasher over `key`, which must hold at least 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < 32 {
            return Err(KeyError::TooShort(key.len()));
        }
        Ok(Self { key: key.to_vec() })
    }

    fn mac(&self, label: &str) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        mac.update(label.as_bytes());
        mac.update(&[0u8]);
        mac
    }

    /// The digest of `data` under `label`.
    pub fn digest(&self, label: &str, data: &[u8]) -> Digest {
        let mut mac = self.mac(label);
        mac.update(data);
        Digest(mac.finalize().into_bytes().into())
    }

    /// The digest of several parts, each length-prefixed so that part
    /// boundaries cannot be shifted.
    pub fn digest_parts(&self, label: &str, parts: &[&[u8]]) -> Digest {
        let mut mac = self.mac(label);
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        Digest(mac.finalize().into_bytes().into())
    }

    /// Digest of a broker token.
    pub fn token(&self, token: &SecretToken) -> Digest {
        self.digest(label::TOKEN, token.expose().as_bytes())
    }

    /// The key a lease is stored under. For a lease id issued by
    /// [`new_lease_suffix`], whose suffix starts with its issue time, the
    /// key is those 8 time bytes followed by the first 24 bytes of the
    /// id's digest: new leases' keys grow in time order, so their inserts
    /// land on the right-hand edge of the primary key, one page, whatever
    /// the number of live leases (a random key dirties a different index
    /// page per lease, and after every checkpoint each page's first change
    /// writes the whole page to the WAL). The 192 digest bits still bind
    /// the key to the whole id: a presented id with a forged time matches
    /// nothing. Any other id (one issued before this scheme) is keyed by
    /// its whole digest, as it always was.
    pub fn lease(&self, lease_id: &str) -> Digest {
        let d = self.digest(label::LEASE, lease_id.as_bytes());
        match lease_time(lease_id) {
            Some(time) => {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&time);
                key[8..].copy_from_slice(&d.0[..24]);
                Digest(key)
            }
            None => d,
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> ! {
    // Hmac<Sha256> accepts keys of every length (RFC 2104): this is dead code
    // kept total for the type checker.
    panic!("HMAC rejected a key, which RFC 2104 does not allow")
}

/// A new broker token: `lsh.` and 256 random bits.
pub fn new_token() -> Result<SecretToken, KeyError> {
    Ok(SecretToken(format!("lsh.{}", random_b64(32)?)))
}

/// A new non-secret handle for a token (Vault's "accessor").
pub fn new_accessor() -> Result<String, KeyError> {
    random_b64(18)
}

/// The tail of a lease id issued at `issued_micros` (microseconds since
/// the Unix epoch): the issue time (8 bytes, big-endian, base64url), a
/// `.`, then 256 random bits. The time orders the lease's storage key (see
/// [`KeyedHasher::lease`]); it is no secret, Vault's lease lookup shows
/// it too. The random part is what makes the id unguessable.
pub fn new_lease_suffix(issued_micros: i64) -> Result<String, KeyError> {
    let time = u64::try_from(issued_micros).unwrap_or(0).to_be_bytes();
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(time),
        random_b64(32)?
    ))
}

/// The issue time at the start of a lease id's suffix, if it has one:
/// the last path segment is 11 base64url characters (8 bytes), a `.`, and
/// more. Base64url has no `.`, so an older id (random base64url only)
/// never parses.
fn lease_time(lease_id: &str) -> Option<[u8; 8]> {
    let suffix = lease_id.rsplit('/').next()?;
    let (time, rest) = suffix.split_once('.')?;
    if time.len() != 11 || rest.is_empty() {
        return None;
    }
    let mut out = [0u8; 8];
    match URL_SAFE_NO_PAD.decode_slice(time, &mut out) {
        Ok(8) => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_domain_separated() {
        let h = KeyedHasher::new(&[7u8; 32]).unwrap();
        assert_ne!(h.digest(label::TOKEN, b"x"), h.digest(label::LEASE, b"x"));
        assert_eq!(h.digest(label::TOKEN, b"x"), h.digest(label::TOKEN, b"x"));
    }

    #[test]
    fn parts_cannot_shift() {
        let h = KeyedHasher::new(&[7u8; 32]).unwrap();
        assert_ne!(
            h.digest_parts("l", &[b"ab", b"c"]),
            h.digest_parts("l", &[b"a", b"bc"])
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(KeyedHasher::new(&[1u8; 31]).is_err());
    }

    #[test]
    fn tokens_are_long_random_and_redacted() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with("lsh."));
        assert_eq!(a.expose().len(), 4 + 43);
        assert!(!format!("{a:?}").contains(&a.expose()[4..]));
        let h = KeyedHasher::new(&[9u8; 32]).unwrap();
        assert!(!format!("{h:?}").contains('9'));
    }

    #[test]
    fn lease_keys_follow_issue_time_and_bind_the_whole_id() {
        let h = KeyedHasher::new(&[5u8; 32]).unwrap();
        let early = format!("secret/data/app/{}", new_lease_suffix(1_000).unwrap());
        let late = format!("secret/data/app/{}", new_lease_suffix(2_000).unwrap());
        let (ke, kl) = (h.lease(&early), h.lease(&late));
        assert_eq!(ke.0[..8], 1_000u64.to_be_bytes());
        assert!(ke.0 < kl.0, "keys grow with the issue time");
        // The same time, another random part: another key.
        let twin = format!("secret/data/app/{}", new_lease_suffix(1_000).unwrap());
        assert_ne!(h.lease(&twin), ke);
        // The rest of the key is the id's digest: any change to the id
        // (here its path) changes it, and a forged time only moves the
        // prefix.
        let moved = early.replacen("app", "apq", 1);
        assert_eq!(h.lease(&moved).0[..8], ke.0[..8]);
        assert_ne!(h.lease(&moved).0[8..], ke.0[8..]);
        let digest = h.digest(label::LEASE, early.as_bytes());
        assert_eq!(ke.0[8..], digest.0[..24]);
        // An id without the time (as issued before) keeps its whole digest.
        let old = format!("secret/data/app/{}", random_b64(32).unwrap());
        assert_eq!(h.lease(&old), h.digest(label::LEASE, old.as_bytes()));
        for odd in [
            "",
            ".",
            "secret/x.y",
            "secret/AAAAAAAAAAA.",
            "secret/AAAAAAAAAA!.x",
        ] {
            assert_eq!(
                h.lease(odd),
                h.digest(label::LEASE, odd.as_bytes()),
                "{odd}"
            );
        }
        // Negative times (a clock before 1970) are clamped, not wrapped.
        assert!(new_lease_suffix(-5).unwrap().starts_with("AAAAAAAAAAA."));
    }

    #[test]
    fn digest_hex_round_trip() {
        let d = Digest([0xab; 32]);
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert!(Digest::from_hex("zz").is_none());
        assert!(d.ct_eq(&d));
        assert!(!d.ct_eq(&Digest::ZERO));
    }
}
