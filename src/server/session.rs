//! Dashboard session tokens: stateless, HMAC-SHA256 signed with the session subkey
//! (`MasterKey::session_key`, never the master key itself).
//!
//! A token is `v1.<payload>.<mac>`, both parts base64url without padding; the payload is
//! `user_id:role:epoch:issued_at:expires_at` (Unix seconds) and the MAC covers `v1.<payload>`.
//! It is valid while it is unexpired and its epoch equals the user's current `session_epoch`:
//! bumping the epoch (logout) revokes every token the user holds. The epoch check is the
//! caller's (it needs the database); `verify` checks the signature and the clock.

use crate::store::UserRole;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long a session lasts.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// The cookie that carries the token for the browser dashboard.
pub const SESSION_COOKIE: &str = "gg_session";
/// Longer inputs are refused before any work (a real token is about 90 characters).
const MAX_TOKEN_LEN: usize = 512;
const VERSION: &str = "v1";

/// What a token says. Not secret by itself: it is the MAC that makes it a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    pub user_id: i64,
    pub role: UserRole,
    pub epoch: i64,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl SessionClaims {
    /// Claims for a session starting `now`, lasting `SESSION_TTL_SECS`.
    pub fn new(user_id: i64, role: UserRole, epoch: i64, now: DateTime<Utc>) -> Self {
        let issued_at = now.timestamp();
        Self {
            user_id,
            role,
            epoch,
            issued_at,
            expires_at: issued_at + SESSION_TTL_SECS,
        }
    }

    pub fn expires(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.expires_at, 0)
    }
}

/// Why a token was refused. Callers answer every case with the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("malformed session token")]
    Malformed,
    #[error("bad session token signature")]
    BadSignature,
    #[error("session expired")]
    Expired,
}

/// Signs and checks tokens. Deliberately not `Debug`: it holds the signing key.
#[derive(Clone)]
pub struct SessionSigner {
    key: [u8; 32],
}

impl SessionSigner {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, signed: &str) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The token for these claims (whatever their times: tests issue expired ones).
    pub fn issue(&self, claims: &SessionClaims) -> String {
        let payload = format!(
            "{}:{}:{}:{}:{}",
            claims.user_id,
            claims.role.as_str(),
            claims.epoch,
            claims.issued_at,
            claims.expires_at
        );
        let signed = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
        let mac = URL_SAFE_NO_PAD.encode(self.mac(&signed));
        format!("{signed}.{mac}")
    }

    /// Checks the signature (in constant time) and that the token is current at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<SessionClaims, SessionError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SessionError::Malformed);
        }
        let (signed, mac_b64) = token.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let (version, payload_b64) = signed.split_once('.').ok_or(SessionError::Malformed)?;
        if version != VERSION {
            return Err(SessionError::Malformed);
        }
        let presented = URL_SAFE_NO_PAD
            .decode(mac_b64)
            .map_err(|_| SessionError::BadSignature)?;
        let expected = self.mac(signed);
        if presented.len() != expected.len() || !bool::from(presented.ct_eq(&expected)) {
            return Err(SessionError::BadSignature);
        }
        // Signed by us from here on; parsing can only fail for a token of another format.
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| SessionError::Malformed)?;
        let payload = String::from_utf8(payload).map_err(|_| SessionError::Malformed)?;
        let claims = parse_payload(&payload).ok_or(SessionError::Malformed)?;
        let now = now.timestamp();
        // A token from the future (beyond a minute of clock skew) or longer than a session can
        // last was not issued by `SessionClaims::new`.
        if now >= claims.expires_at
            || claims.issued_at > now + 60
            || claims.expires_at - claims.issued_at > SESSION_TTL_SECS
        {
            return Err(SessionError::Expired);
        }
        Ok(claims)
    }
}

fn parse_payload(payload: &str) -> Option<SessionClaims> {
    let mut parts = payload.split(':');
    let claims = SessionClaims {
        user_id: parts.next()?.parse().ok()?,
        role: UserRole::parse(parts.next()?)?,
        epoch: parts.next()?.parse().ok()?,
        issued_at: parts.next()?.parse().ok()?,
        expires_at: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> SessionSigner {
        SessionSigner::new([7; 32])
    }

    #[test]
    fn round_trips_and_refuses_tampering() {
        let now = Utc::now();
        let claims = SessionClaims::new(42, UserRole::Viewer, 3, now);
        let token = signer().issue(&claims);
        assert_eq!(signer().verify(&token, now), Ok(claims));

        // Another key, a changed payload, a changed MAC, garbage.
        assert_eq!(
            SessionSigner::new([8; 32]).verify(&token, now),
            Err(SessionError::BadSignature)
        );
        let forged = signer().issue(&SessionClaims::new(42, UserRole::Admin, 3, now));
        let forged: Vec<&str> = forged.split('.').collect();
        let parts: Vec<&str> = token.split('.').collect();
        let swapped = format!("v1.{}.{}", forged[1], parts[2]);
        assert_eq!(
            signer().verify(&swapped, now),
            Err(SessionError::BadSignature)
        );
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(bytes).unwrap();
            if t != token {
                assert!(signer().verify(&t, now).is_err(), "accepted {t}");
            }
        }
        assert!(signer().verify("", now).is_err());
        assert!(signer().verify("v1..", now).is_err());
        assert!(signer().verify(&"a".repeat(10_000), now).is_err());
    }

    #[test]
    fn refuses_expired_and_overlong_tokens() {
        let now = Utc::now();
        let mut claims = SessionClaims::new(1, UserRole::Admin, 0, now);
        claims.expires_at = now.timestamp() - 1;
        claims.issued_at = claims.expires_at - 60;
        let token = signer().issue(&claims);
        assert_eq!(signer().verify(&token, now), Err(SessionError::Expired));

        let mut claims = SessionClaims::new(1, UserRole::Admin, 0, now);
        claims.expires_at += 3600;
        let token = signer().issue(&claims);
        assert_eq!(signer().verify(&token, now), Err(SessionError::Expired));
    }
}
