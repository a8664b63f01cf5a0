//! The Secret Service's encrypted session, `dh-ietf1024-sha256-aes128-cbc-pkcs7`: a Diffie-Hellman
//! exchange in the RFC 2409 "Second Oakley Group" (1024-bit MODP, generator 2), HKDF-SHA256 of the shared
//! secret (no salt, no info) into an AES-128 key, and AES-128-CBC with PKCS#7 padding for each secret,
//! with a fresh random IV as the secret's parameters. Byte-compatible with libsecret and gnome-keyring.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use num_bigint::BigUint;
use zeroize::{Zeroize, Zeroizing};

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
    /// The operating system's random source failed (for a private key or an IV).
    Random,
    /// The service's public key is not in the group (or is a trivial element).
    BadPeerKey,
    /// HKDF refused to expand the shared secret into a key (it does so only for output lengths it
    /// cannot produce, which 16 bytes is not).
    KeyDerivation,
    /// A secret from the service did not decrypt (its IV is not one block, or the key or padding is wrong).
    Decrypt,
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CryptoError::Random => "the system random number generator failed",
            CryptoError::BadPeerKey => "the Secret Service sent an invalid session public key",
            CryptoError::KeyDerivation => "the session key could not be derived (HKDF-SHA256)",
            CryptoError::Decrypt => "a secret from the Secret Service did not decrypt",
        })
    }
}

/// Our half of the exchange.
pub(super) struct Keypair {
    /// The private exponent, big-endian, wiped on drop. It is kept as bytes because num-bigint 0.4
    /// cannot wipe a `BigUint`: each exponentiation builds a short-lived one from these bytes.
    private: Zeroizing<[u8; PRIVATE_BYTES]>,
    /// `2^private mod p`, big-endian, for `OpenSession`.
    pub(super) public: Vec<u8>,
}

impl Keypair {
    /// A fresh ephemeral key pair.
    pub(super) fn generate() -> Result<Keypair, CryptoError> {
        let mut private = Zeroizing::new([0u8; PRIVATE_BYTES]);
        getrandom::fill(private.as_mut_slice()).map_err(|_| CryptoError::Random)?;
        Ok(Keypair::from_private(private))
    }

    fn from_private(private: Zeroizing<[u8; PRIVATE_BYTES]>) -> Keypair {
        let exponent = BigUint::from_bytes_be(private.as_slice());
        let public = BigUint::from(2u32)
            .modpow(&exponent, &prime())
            .to_bytes_be();
        Keypair { private, public }
    }

    /// The session key shared with the service whose public key is `peer` (big-endian).
    pub(super) fn session_key(&self, peer: &[u8]) -> Result<SessionKey, CryptoError> {
        let prime = prime();
        let peer = BigUint::from_bytes_be(peer);
        // 1 and p − 1 (and anything outside the group) would make the shared secret predictable.
        if peer <= BigUint::from(1u32) || peer >= &prime - 1u32 {
            return Err(CryptoError::BadPeerKey);
        }
        let exponent = BigUint::from_bytes_be(self.private.as_slice());
        // The secrets that reach a `BigUint` or HKDF's state (the exponent's copy, the shared secret as a
        // number, the pseudorandom key) are freed unwiped: neither crate can wipe them. Our own copies are.
        let shared = Zeroizing::new(peer.modpow(&exponent, &prime).to_bytes_be());
        // HKDF input is the shared secret left-padded to the modulus size, as libsecret does.
        let mut ikm = Zeroizing::new([0u8; PRIME.len()]);
        ikm[PRIME.len() - shared.len()..].copy_from_slice(&shared);
        let mut key = SessionKey([0u8; 16]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, ikm.as_slice())
            .expand(&[], &mut key.0)
            .map_err(|_| CryptoError::KeyDerivation)?;
        Ok(key)
    }
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&PRIME)
}

/// The AES-128 key of an encrypted session, wiped on drop (the AES round keys derived from it are
/// wiped by `aes` itself, through its `zeroize` feature).
#[derive(Clone)]
pub(super) struct SessionKey([u8; 16]);

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

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
        let cipher = Encryptor::new((&self.0).into(), (&iv).into());
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

    /// The big-endian bytes of a hex string.
    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    // The expected values below were computed apart from this code, with Python's built-in `pow` over
    // the prime as RFC 2409 §6.2 prints it in hex, and HKDF-SHA256 written out with `hmac`/`hashlib`
    // (RFC 5869: no salt is 32 zero bytes, PRK = HMAC(salt, ikm), key = HMAC(PRK, b"\x01")[:16] for
    // empty info), the shared secret left-padded to 128 bytes:
    //   ours = pow(2, a, P); shared = pow(peer, a, P)
    //   prk = hmac.new(b"\0" * 32, shared.to_bytes(128, "big"), hashlib.sha256).digest()
    //   key = hmac.new(prk, b"\x01", hashlib.sha256).digest()[:16]
    // with a = 0x0102…1f20 (32 bytes) and peer = pow(2, 0x4041…5e5f, P).

    #[test]
    fn known_answer_for_a_full_exchange() {
        let private: [u8; PRIVATE_BYTES] = std::array::from_fn(|i| i as u8 + 1);
        let pair = Keypair::from_private(Zeroizing::new(private));
        let ours = "457120764f3a1e6fd58103e41a4093a6c8bc1d97cb8759de41c21afdd2d3048a\
                    5ef3d88ce24aa6ba4fe30bcfb0b0f75abf1a8aeaff3723f1bf53740c902005e1\
                    199fabad7c538e94a7034fd585339a02f3634893f748929d2a7257643e398130\
                    541ae64124c17d4507a97f1cbebeb7b933642b8df479eb59e36cfeffbf1671dd";
        let peer = "a5a28c20c27ed26c4b0244f4f8fcd2a1ce89bfec768fcdb4e404cc7040f1d866\
                    44af268e691ad7d583cecddf2f860e190ef201f960532e0b50607e8bb98499af\
                    0077d7232178519aba72053921c51b7f69e25f81231c1e73e9622343d3c7b67b\
                    aeeb7365c26bc24bf3a27532420280549774581cace753d89c4ad597fa8445ed";
        assert_eq!(pair.public, hex(ours));
        let key = pair.session_key(&hex(peer)).unwrap();
        assert_eq!(
            key.0,
            [
                0x97, 0x0b, 0xf1, 0x7e, 0x38, 0x2d, 0xe8, 0x5d, 0x41, 0x10, 0x8d, 0x69, 0x45, 0xce,
                0x8a, 0x1b
            ]
        );
    }

    #[test]
    fn known_answer_for_hkdf_input_padding() {
        // With private exponent 1 the shared secret is the peer key itself: a short peer key must be
        // left-padded to 128 bytes before HKDF, which a key of the same value written in full shows.
        let mut one = [0u8; PRIVATE_BYTES];
        one[PRIVATE_BYTES - 1] = 1;
        let pair = Keypair {
            private: Zeroizing::new(one),
            public: vec![2],
        };
        let short = pair.session_key(&[0x01, 0x02]).unwrap();
        let mut padded = [0u8; 128];
        padded[126..].copy_from_slice(&[0x01, 0x02]);
        let full = pair.session_key(&padded).unwrap();
        assert_eq!(short.0, full.0);
        // HKDF-SHA256 of 126 zero bytes then 01 02, computed as above.
        let expected = [
            0xa7, 0x60, 0x99, 0xfb, 0x7d, 0x7b, 0x52, 0x2a, 0xc5, 0x07, 0x80, 0xb5, 0x85, 0xa1,
            0x06, 0x80,
        ];
        assert_eq!(short.0, expected);
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest::proptest! {
        // The service's public key and each secret's IV and ciphertext come from the bus: any bytes end in
        // a key or a refusal, a plaintext or a refusal, never a panic. Exponent 1 keeps each case cheap;
        // the arithmetic is the same for any exponent.
        #[test]
        fn fuzz_dh_any_peer_key_iv_and_ciphertext(
            peer in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..160),
                proptest::collection::vec(any::<u8>(), 128..=128),
                Just(PRIME.to_vec()),
            ],
            iv in proptest::collection::vec(any::<u8>(), 0..40),
            ciphertext in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut one = [0u8; PRIVATE_BYTES];
            one[PRIVATE_BYTES - 1] = 1;
            let pair = Keypair::from_private(Zeroizing::new(one));
            let value = BigUint::from_bytes_be(&peer);
            match pair.session_key(&peer) {
                Ok(key) => {
                    prop_assert!(value > BigUint::from(1u32) && value < prime() - 1u32);
                    if let Ok(plain) = key.decrypt(&iv, &ciphertext) {
                        prop_assert_eq!(iv.len(), 16);
                        prop_assert!(plain.len() < ciphertext.len());
                    }
                }
                Err(error) => {
                    prop_assert!(matches!(error, CryptoError::BadPeerKey), "{error}");
                    prop_assert!(value <= BigUint::from(1u32) || value >= prime() - 1u32);
                }
            }
        }
    }
}
