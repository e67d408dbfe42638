//! Password hashing with Argon2id, off the async runtime's threads.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Verified against when an email is unknown, so both paths take the same time.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2a+vPh8k3P7cBgYQ0u1t1lq6D8lqzKx3tq0n6OQb0h8";

pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < 10 {
        return Err("Choose a password of at least 10 characters.".into());
    }
    if password.len() > 1024 {
        return Err("That password is too long.".into());
    }
    Ok(())
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
    })
    .await?
}

pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_the_dummy_parses() {
        let hash = hash("correct horse battery".into()).await.unwrap();
        assert!(verify("correct horse battery".into(), hash.clone()).await);
        assert!(!verify("wrong".into(), hash).await);
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough!").is_ok());
    }
}
