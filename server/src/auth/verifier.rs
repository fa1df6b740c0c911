//! A password as Weir stores it: a SCRAM-SHA-256 `SaltedPassword`
//! (PBKDF2-HMAC-SHA-256 over the SASLprep'd password with a random salt and
//! 4096 iterations, RFC 5802), computed by pgwire's own SCRAM code so that
//! what is stored is exactly what its server side checks a proof against.
//!
//! The password itself is never stored and never logged: it lives only in
//! the statement being run, and is dropped with it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use serde::{Deserialize, Serialize};

/// Bytes of random salt per verifier (Postgres uses 16 as well).
const SALT_BYTES: usize = 16;

/// What is kept of a role's password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier {
    /// Always `SCRAM-SHA-256`.
    pub mechanism: String,
    /// PBKDF2 iterations.
    pub iterations: usize,
    /// The salt, base64.
    pub salt: String,
    /// `Hi(password, salt, iterations)`, base64.
    pub salted_password: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Password-equivalent for SCRAM: keep it out of any debug output.
        f.write_str("Verifier(SCRAM-SHA-256, ..)")
    }
}

impl Verifier {
    /// A fresh verifier for `password`, with a new random salt.
    pub fn new(password: &str) -> Self {
        let salt: [u8; SALT_BYTES] = rand::random();
        Self::with_salt(password, &salt)
    }

    fn with_salt(password: &str, salt: &[u8]) -> Self {
        Self {
            mechanism: "SCRAM-SHA-256".to_string(),
            iterations: SCRAM_ITERATIONS,
            salt: STANDARD.encode(salt),
            salted_password: STANDARD.encode(gen_salted_password(password, salt, SCRAM_ITERATIONS)),
        }
    }

    /// The raw salt and salted password; `None` if the stored text is not
    /// valid base64 (a hand-edited file).
    pub fn decoded(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            STANDARD.decode(&self.salt).ok()?,
            STANDARD.decode(&self.salted_password).ok()?,
        ))
    }

    /// Does `password` match? (Used at start-up, to leave an unchanged
    /// bootstrap password's verifier alone.)
    pub fn matches(&self, password: &str) -> bool {
        match self.decoded() {
            Some((salt, stored)) => {
                self.iterations == SCRAM_ITERATIONS
                    && gen_salted_password(password, &salt, self.iterations) == stored
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salted_differently_each_time_and_matches_only_its_password() {
        let a = Verifier::new("s3cret");
        let b = Verifier::new("s3cret");
        assert_ne!(a.salt, b.salt, "each verifier gets its own salt");
        assert_ne!(a.salted_password, b.salted_password);
        assert!(a.matches("s3cret"));
        assert!(!a.matches("s3cret "));
        let json = serde_json::to_string(&a).expect("json");
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!format!("{a:?}").contains(&a.salted_password));
    }
}
