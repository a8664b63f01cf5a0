//! The Secret Service's encrypted session, `dh-ietf1024-sha256-aes128-cbc-pkcs7`: a Diffie-Hellman
//! exchange in the RFC 2409 "Second Oakley Group" (1024-bit MODP, generator 2), HKDF-SHA256 of the shared
//! secret (no salt, no info) into an AES-128 key, and AES-128-CBC with PKCS#7 padding for each secret,
//! with a fresh random IV as the secret's parameters. Byte-compatible with libsecret and gnome-keyring.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use num_bigint::BigUint;

/// The algorithm name `OpenSession` takes.
pub(super) const ALGORITHM: &str = "dh-ietf1024-sha256-aes128-cbc-pkcs7";

/// RFC 2409 §6.2, the 1024-bit MODP prime 2^1024 − 2^960 − 1 + 2^64 · (⌊2^894 π⌋ + 129093).
const PRIME: [u8; 128] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x37, 0xED, 0x6B, 0x0B, 0xFF, 0x5C, 0xB6, 0xF4, 0x06, 0xB7, 0xED,
    0xEE, 0x38, 0x6B, 0xFB, 0x5A, 0x89, 0x9F, 0xA5, 0xAE, 0x9F, 0x24, 0x11, 0x7C, 0x4B, 0x1F, 0xE6,
    0x49, 0x28, 0x66, 0x51, 0xEC, 0xE6, 0x53, 0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];

/// Length of the private exponent. The group offers about 80 bits of security (NIST SP 800-57 rates
/// 1024-bit finite-field DH at 80); the best attack on a short exponent (van Oorschot–Wiener, Pollard
/// kangaroo) costs about 2^(n/2) for an n-bit exponent, so 256 bits (2^128) leaves the group itself as the
/// weakest link. RFC 3526 §8 and RFC 7919 §5.2 likewise ask for an exponent of at least twice the security
/// strength, not the full modulus size. A full 1024-bit exponent only made each exponentiation 4× slower.
const PRIVATE_BYTES: usize = 32;

/// Why the encrypted session could not be set up or used.
#[derive(Debug)]
pub(super) enum CryptoError {
    /// The operating system's random source failed.
    Random,
    /// The service's public key is not in the group (or is a trivial element).
    BadPeerKey,
    /// A secret did not decrypt (wrong key, IV or padding).
    Decrypt,
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CryptoError::Random => "the system random number generator failed",
            CryptoError::BadPeerKey => "the Secret Service sent an invalid session public key",
            CryptoError::Decrypt => "a secret from the Secret Service did not decrypt",
        })
    }
}

/// Our half of the exchange.
pub(super) struct Keypair {
    private: BigUint,
    /// `2^private mod p`, big-endian, for `OpenSession`.
    pub(super) public: Vec<u8>,
}

impl Keypair {
    /// A fresh ephemeral key pair.
    pub(super) fn generate() -> Result<Keypair, CryptoError> {
        let mut bytes = [0u8; PRIVATE_BYTES];
        getrandom::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        let private = BigUint::from_bytes_be(&bytes);
        let public = BigUint::from(2u32).modpow(&private, &prime()).to_bytes_be();
        Ok(Keypair { private, public })
    }

    /// The session key shared with the service whose public key is `peer` (big-endian).
    pub(super) fn session_key(&self, peer: &[u8]) -> Result<SessionKey, CryptoError> {
        let prime = prime();
        let peer = BigUint::from_bytes_be(peer);
        // 1 and p − 1 (and anything outside the group) would make the shared secret predictable.
        if peer <= BigUint::from(1u32) || peer >= &prime - 1u32 {
            return Err(CryptoError::BadPeerKey);
        }
        let shared = peer.modpow(&self.private, &prime).to_bytes_be();
        // HKDF input is the shared secret left-padded to the modulus size, as libsecret does.
        let mut ikm = [0u8; PRIME.len()];
        ikm[PRIME.len() - shared.len()..].copy_from_slice(&shared);
        let mut key = [0u8; 16];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &ikm)
            .expand(&[], &mut key)
            .map_err(|_| CryptoError::BadPeerKey)?;
        Ok(SessionKey(key))
    }
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&PRIME)
}

/// The AES-128 key of an encrypted session.
#[derive(Clone)]
pub(super) struct SessionKey([u8; 16]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(REDACTED)")
    }
}

type Encryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;

impl SessionKey {
    /// `(iv, ciphertext)` of `plain` under a fresh random IV.
    pub(super) fn encrypt(&self, plain: &[u8]) -> Result<([u8; 16], Vec<u8>), CryptoError> {
        let mut iv = [0u8; 16];
        getrandom::fill(&mut iv).map_err(|_| CryptoError::Random)?;
        let cipher = Encryptor::new_from_slices(&self.0, &iv).map_err(|_| CryptoError::Random)?;
        Ok((iv, cipher.encrypt_padded_vec::<Pkcs7>(plain)))
    }

    /// The plaintext of `ciphertext`, encrypted under `iv`.
    pub(super) fn decrypt(&self, iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Decryptor::new_from_slices(&self.0, iv)
            .map_err(|_| CryptoError::Decrypt)?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_key_and_round_trip() {
        let (ours, theirs) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
        let key = ours.session_key(&theirs.public).unwrap();
        let other = theirs.session_key(&ours.public).unwrap();
        assert_eq!(key.0, other.0);
        let secret = "pässwörd\u{0}\u{1F511}".as_bytes();
        let (iv, ciphertext) = key.encrypt(secret).unwrap();
        assert_eq!(ciphertext.len() % 16, 0);
        assert_ne!(
            &ciphertext[..secret.len().min(16)],
            &secret[..secret.len().min(16)]
        );
        assert_eq!(other.decrypt(&iv, &ciphertext).unwrap(), secret);
        assert!(other.decrypt(&iv[..8], &ciphertext).is_err());
        assert!(other.decrypt(&iv, &ciphertext[..15]).is_err());
    }

    #[test]
    fn public_key_is_in_the_group_and_trivial_peers_are_refused() {
        let pair = Keypair::generate().unwrap();
        assert!(pair.public.len() <= PRIME.len());
        assert!(BigUint::from_bytes_be(&pair.public) < prime());
        let p_minus_1 = (prime() - 1u32).to_bytes_be();
        for peer in [&[][..], &[1], &p_minus_1, &PRIME, &[0xff; 129]] {
            assert!(pair.session_key(peer).is_err());
        }
    }

    #[test]
    fn known_answer_for_hkdf_input_padding() {
        // With private exponent 1 the shared secret is the peer key itself: a short peer key must be
        // left-padded to 128 bytes before HKDF, which a key of the same value written in full shows.
        let pair = Keypair {
            private: BigUint::from(1u32),
            public: vec![2],
        };
        let short = pair.session_key(&[0x01, 0x02]).unwrap();
        let mut padded = [0u8; 128];
        padded[126..].copy_from_slice(&[0x01, 0x02]);
        let full = pair.session_key(&padded).unwrap();
        assert_eq!(short.0, full.0);
        let mut expected = [0u8; 16];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &padded)
            .expand(&[], &mut expected)
            .unwrap();
        assert_eq!(short.0, expected);
    }
}
