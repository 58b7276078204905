//! Keys and ciphers. One 32-byte master key (`encryption_key`) never signs or encrypts anything
//! itself: HKDF-SHA256 derives a separate subkey per purpose, so the session-signing key and the
//! data-encryption key are independent and a leak of one does not expose the other.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng},
};
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;

pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "must be exactly 32 bytes, written as 64 hex digits or base64 (got {0} bytes); generate one with `openssl rand -hex 32`"
    )]
    WrongLength(usize),
    #[error("is not valid hex or base64")]
    Encoding,
    #[error("is too weak (every byte is the same); generate one with `openssl rand -hex 32`")]
    Weak,
    #[error("could not read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The master key. Deliberately not `Debug`/`Clone`: it is only ever used to derive subkeys.
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or not) into 32 bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        // Hex when it looks like hex (a 32-byte key in base64 is 43-44 chars, never even-length
        // pure hex), base64 otherwise.
        let bytes = if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| KeyError::Encoding)?
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or(KeyError::Encoding)?
        };
        let arr: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        if arr.iter().all(|b| *b == arr[0]) {
            return Err(KeyError::Weak);
        }
        Ok(Self(arr))
    }

    pub fn generate() -> Self {
        loop {
            let mut k = [0u8; KEY_LEN];
            OsRng.fill_bytes(&mut k);
            if !k.iter().all(|b| *b == k[0]) {
                return Self(k);
            }
        }
    }

    /// Reads `<data_dir>/encryption.key`, or creates it (mode 0600) with a fresh key.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, format!("{}\n", hex::encode(key.0)).as_bytes()).map_err(io)?;
                Ok((key, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn derive(&self, purpose: &[u8]) -> [u8; KEY_LEN] {
        let hk = Hkdf::<Sha256>::new(Some(b"gophergate"), &self.0);
        let mut out = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand(purpose, &mut out);
        out
    }

    /// Subkey that encrypts data at rest (provider credentials).
    pub fn data_cipher(&self) -> DataCipher {
        DataCipher::new(self.derive(b"data-encryption v1"))
    }

    /// Subkey that signs dashboard session tokens.
    pub fn session_key(&self) -> [u8; KEY_LEN] {
        self.derive(b"session-signing v1")
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// AES-256-GCM with a random 96-bit nonce per message. `key_id` identifies the subkey so stored
/// ciphertexts can be re-encrypted when the master key is rotated.
#[derive(Clone)]
pub struct DataCipher {
    cipher: Aes256Gcm,
    key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("the value was encrypted under another key (id {0}); was encryption_key changed?")]
    WrongKey(String),
    #[error("the value could not be decrypted (corrupted or tampered)")]
    Corrupt,
}

impl DataCipher {
    fn new(key: [u8; KEY_LEN]) -> Self {
        let key_id = hex::encode(&Sha256::digest([b"key-id:".as_slice(), &key].concat())[..8]);
        Self {
            cipher: Aes256Gcm::new(&key.into()),
            key_id,
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `aad` binds the ciphertext to its row (e.g. the provider name) so rows cannot be swapped.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Sealed {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                aes_gcm::aead::Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Encryption only fails for messages over 64 GiB.
            .unwrap_or_default();
        Sealed {
            key_id: self.key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, CipherError> {
        if sealed.key_id != self.key_id {
            return Err(CipherError::WrongKey(sealed.key_id.clone()));
        }
        if sealed.nonce.len() != 12 {
            return Err(CipherError::Corrupt);
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                aes_gcm::aead::Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| CipherError::Corrupt)
    }
}

/// Client API keys: `gg-` and 43 URL-safe base64 characters (256 random bits). Only the SHA-256 of
/// a key is stored; a fast hash is right here because the key has full entropy (no dictionary to
/// try), and it keeps the per-request check cheap.
pub fn generate_client_key() -> String {
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    format!(
        "gg-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

pub type KeyHash = [u8; 32];

pub fn hash_client_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The part of a key that may be shown again (lists, logs): enough to recognise, useless to use.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(9).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_base64() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(MasterKey::parse(hex_key).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([
            7u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
            24, 25, 26, 27, 28, 29, 30, 31,
        ]);
        assert!(MasterKey::parse(&b64).is_ok());
    }

    #[test]
    fn refuses_wrong_length_and_weak_keys() {
        assert!(matches!(
            MasterKey::parse("abcd"),
            Err(KeyError::WrongLength(2))
        ));
        assert!(matches!(
            MasterKey::parse(&"ab".repeat(31)),
            Err(KeyError::WrongLength(31))
        ));
        assert!(matches!(
            MasterKey::parse(&"00".repeat(32)),
            Err(KeyError::Weak)
        ));
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(matches!(MasterKey::parse(&b64), Err(KeyError::Weak)));
        assert!(matches!(
            MasterKey::parse("not a key!"),
            Err(KeyError::Encoding)
        ));
    }

    #[test]
    fn subkeys_differ_and_seal_round_trips() {
        let k = MasterKey::generate();
        assert_ne!(k.session_key(), k.derive(b"data-encryption v1"));
        let c = k.data_cipher();
        let sealed = c.seal(b"sk-provider", b"openai");
        assert_ne!(sealed.ciphertext, b"sk-provider");
        assert_eq!(c.open(&sealed, b"openai").unwrap(), b"sk-provider");
        // Bound to its row, and to its key.
        assert!(c.open(&sealed, b"gemini").is_err());
        let other = MasterKey::generate().data_cipher();
        assert!(matches!(
            other.open(&sealed, b"openai"),
            Err(CipherError::WrongKey(_))
        ));
        // A fresh nonce each time.
        assert_ne!(c.seal(b"x", b"").nonce, c.seal(b"x", b"").nonce);
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/encryption.key");
        let (k1, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.0, k2.0);
    }

    #[test]
    fn client_keys_are_random_and_hashed() {
        let a = generate_client_key();
        assert!(a.starts_with("gg-") && a.len() == 46);
        assert_ne!(a, generate_client_key());
        assert_eq!(hash_client_key(&a), hash_client_key(&a));
        assert_eq!(key_prefix(&a).len(), 9);
    }
}
