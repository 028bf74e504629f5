//! The development issuer behind `leash-broker dev`: one ES256 key kept in
//! the data directory (PKCS#8 PEM, mode 0600), its public JWK set next to it,
//! and minting of short-lived tokens that the ordinary [`Issuers`] path
//! verifies like any other issuer's.
//!
//! Must never happen: the private key in an error, a log line or `Debug`
//! output; the key file created readable by others, or an existing one used
//! when it is; a minted token in an error; an existing key silently replaced.
//!
//! [`Issuers`]: crate::Issuers

use std::fmt;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::encoding::b64url_encode;
use crate::error::ConfigError;
use crate::issuer::{IssuerConfig, MAX_JWT_BYTES, MAX_LEEWAY_SECS};
use crate::keys::pem_blocks;

const KEY_FILE: &str = "dev-issuer.key";
const JWKS_FILE: &str = "dev-issuer.jwks.json";
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// Claims `mint` sets itself; callers may not supply them.
const RESERVED_CLAIMS: [&str; 7] = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"];
/// The latest NumericDate minted (9999-12-31T23:59:59Z).
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// The development issuer: a local ES256 signing key.
pub struct DevIssuer {
    key: EcdsaKeyPair,
    kid: String,
    jwks_path: PathBuf,
    rng: SystemRandom,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.kid)
            .field("jwks_path", &self.jwks_path)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn dev_err(path: &Path, reason: impl Into<String>) -> ConfigError {
    ConfigError::key_file(DevIssuer::NAME, path, reason)
}

fn dev_io(action: &'static str, path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError::io(DevIssuer::NAME, action, path, e)
}

fn random_suffix(rng: &SystemRandom) -> Result<String, ConfigError> {
    let mut b = [0u8; 12];
    rng.fill(&mut b)
        .map_err(|_| ConfigError::invalid(DevIssuer::NAME, "the random source failed"))?;
    Ok(b64url_encode(&b))
}

fn to_pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Writes `bytes` to a new temporary file in `dir` with `mode`, synced.
fn write_temp(
    dir: &Path,
    stem: &str,
    bytes: &[u8],
    mode: u32,
    rng: &SystemRandom,
) -> Result<PathBuf, ConfigError> {
    let tmp = dir.join(format!(".{stem}.{}.tmp", random_suffix(rng)?));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = opts.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(dev_io("write", &tmp, e))
        }
    }
}

/// Reads the existing key file, refusing a symlink, a non-file, a file
/// others can read, or anything but one P-256 PKCS#8 key.
fn read_key(path: &Path, rng: &SystemRandom) -> Result<EcdsaKeyPair, ConfigError> {
    let meta = fs::symlink_metadata(path).map_err(|e| dev_io("read", path, e))?;
    if !meta.file_type().is_file() {
        return Err(dev_err(path, "is not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(dev_err(
                path,
                "is readable or writable by group or others; chmod 600 it",
            ));
        }
    }
    let mut text = Zeroizing::new(Vec::new());
    fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut text))
        .map_err(|e| dev_io("read", path, e))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(dev_err(path, "is too large to be a key"));
    }
    let text = std::str::from_utf8(&text).map_err(|_| dev_err(path, "is not a PEM text file"))?;
    let blocks = pem_blocks(text).map_err(|r| dev_err(path, r))?;
    let [(label, der)] = blocks.as_slice() else {
        return Err(dev_err(path, "must hold exactly one PEM block"));
    };
    if label != "PRIVATE KEY" {
        return Err(dev_err(path, "must hold a PKCS#8 PRIVATE KEY"));
    }
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, rng)
        .map_err(|_| dev_err(path, "is not a P-256 PKCS#8 key"))
}

/// Creates the key file without ever replacing one: the key is written to a
/// temporary file and hard-linked into place, which fails if another
/// process got there first (then its key is used).
fn create_key(dir: &Path, path: &Path, rng: &SystemRandom) -> Result<EcdsaKeyPair, ConfigError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| ConfigError::invalid(DevIssuer::NAME, "cannot generate a P-256 key"))?;
    let pem = to_pem("PRIVATE KEY", pkcs8.as_ref());
    let tmp = write_temp(dir, KEY_FILE, pem.as_bytes(), 0o600, rng)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "dev issuer: created a new signing key");
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng)
                .map_err(|_| dev_err(path, "generated key could not be loaded"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(path, rng),
        Err(e) => Err(dev_io("create", path, e)),
    }
}

/// The RFC 7638 thumbprint of a P-256 public key.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    b64url_encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
}

impl DevIssuer {
    /// The issuer name policies use.
    pub const NAME: &'static str = "dev";
    /// The `iss` of minted tokens.
    pub const ISSUER: &'static str = "https://dev.leash.invalid";
    /// The `aud` of minted tokens.
    pub const AUDIENCE: &'static str = "leash";

    /// Loads the key from `dir/dev-issuer.key`, or creates it (and `dir`)
    /// on first start; (re)writes `dir/dev-issuer.jwks.json` if it does not
    /// match the key.
    pub fn load_or_create(dir: &Path) -> Result<DevIssuer, ConfigError> {
        let rng = SystemRandom::new();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| dev_io("create", dir, e))?;

        let key_path = dir.join(KEY_FILE);
        let key = match fs::symlink_metadata(&key_path) {
            Ok(_) => read_key(&key_path, &rng)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(dir, &key_path, &rng)?,
            Err(e) => return Err(dev_io("read", &key_path, e)),
        };

        let point = key.public_key().as_ref();
        let (x, y) = match point {
            [4, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err(dev_err(&key_path, "unexpected public key encoding")),
        };
        let (x, y) = (b64url_encode(x), b64url_encode(y));
        let kid = thumbprint(&x, &y);
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "alg": "ES256", "use": "sig",
        }]});
        let mut jwks_bytes = serde_json::to_vec_pretty(&jwks)
            .map_err(|_| ConfigError::invalid(Self::NAME, "cannot encode the JWK set"))?;
        jwks_bytes.push(b'\n');

        let jwks_path = dir.join(JWKS_FILE);
        let current = fs::read(&jwks_path).ok();
        if current.as_deref() != Some(jwks_bytes.as_slice()) {
            let tmp = write_temp(dir, JWKS_FILE, &jwks_bytes, 0o644, &rng)?;
            if let Err(e) = fs::rename(&tmp, &jwks_path) {
                let _ = fs::remove_file(&tmp);
                return Err(dev_io("write", &jwks_path, e));
            }
        }
        Ok(DevIssuer {
            key,
            kid,
            jwks_path,
            rng,
        })
    }

    /// The key id (RFC 7638 thumbprint) minted tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The configuration that verifies this issuer's tokens.
    pub fn issuer_config(&self) -> IssuerConfig {
        IssuerConfig {
            name: Self::NAME.into(),
            issuer: Self::ISSUER.into(),
            audiences: vec![Self::AUDIENCE.into()],
            algorithms: vec!["ES256".into()],
            jwks_file: Some(self.jwks_path.clone()),
            public_key_files: Vec::new(),
            leeway_secs: MAX_LEEWAY_SECS,
            required_claims: Vec::new(),
        }
    }

    /// Mints a token for `subject`, valid from `now` for `ttl` (whole
    /// seconds, at least one), with `extra_claims` added. The registered
    /// claims (iss, aud, sub, iat, nbf, exp, jti) are set here and may not
    /// be supplied in `extra_claims`.
    pub fn mint(
        &self,
        subject: &str,
        ttl: std::time::Duration,
        extra_claims: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<String, ConfigError> {
        if subject.is_empty() {
            return Err(ConfigError::Mint("subject must not be empty".into()));
        }
        if ttl.as_secs() < 1 {
            return Err(ConfigError::Mint("ttl must be at least one second".into()));
        }
        let ttl = i64::try_from(ttl.as_secs())
            .map_err(|_| ConfigError::Mint("ttl out of range".into()))?;
        if let Some(r) = RESERVED_CLAIMS
            .iter()
            .find(|r| extra_claims.contains_key(**r))
        {
            return Err(ConfigError::Mint(format!(
                "claim \"{r}\" is set by the issuer and cannot be supplied"
            )));
        }
        let iat = now.timestamp();
        let exp = iat
            .checked_add(ttl)
            .filter(|e| iat >= 0 && *e <= MAX_NUMERIC_DATE)
            .ok_or_else(|| ConfigError::Mint("ttl or time out of range".into()))?;
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| ConfigError::Mint("the random source failed".into()))?;

        let mut claims = extra_claims;
        claims.insert("iss".into(), Self::ISSUER.into());
        claims.insert("aud".into(), Self::AUDIENCE.into());
        claims.insert("sub".into(), subject.into());
        claims.insert("iat".into(), iat.into());
        claims.insert("nbf".into(), iat.into());
        claims.insert("exp".into(), exp.into());
        claims.insert("jti".into(), b64url_encode(&jti).into());
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});

        let enc = |v: &Value| {
            serde_json::to_vec(v)
                .map(|b| b64url_encode(&b))
                .map_err(|_| ConfigError::Mint("cannot encode claims".into()))
        };
        let mut jwt = format!("{}.{}", enc(&header)?, enc(&Value::Object(claims))?);
        let sig = self
            .key
            .sign(&self.rng, jwt.as_bytes())
            .map_err(|_| ConfigError::Mint("signing failed".into()))?;
        jwt.push('.');
        jwt.push_str(&b64url_encode(sig.as_ref()));
        if jwt.len() > MAX_JWT_BYTES {
            return Err(ConfigError::Mint(format!(
                "the token would be larger than {MAX_JWT_BYTES} bytes"
            )));
        }
        Ok(jwt)
    }
}
