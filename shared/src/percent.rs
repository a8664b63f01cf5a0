//! Percent-decoding (`%xx`), as both D-Bus addresses and Google's resource names escape bytes. Lenient
//! on purpose: a `%` not followed by two hex digits stands for itself, so a malformed name still reads
//! as what it says rather than failing a listing or a bus connection.

/// `text` with every valid `%xx` turned into its byte.
pub(crate) fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn valid_escapes_decode_and_the_rest_stands_for_itself() {
        assert_eq!(decode("sha256%3Aab"), b"sha256:ab");
        assert_eq!(decode("/tmp/a%2cb%zz"), b"/tmp/a,b%zz");
        assert_eq!(decode("100%"), b"100%");
        assert_eq!(decode("%4"), b"%4");
        assert_eq!(decode("%e2%82%ac"), "€".as_bytes());
    }
}
