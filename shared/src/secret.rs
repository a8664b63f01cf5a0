//! [`Secret`]: a value that never shows up in `Debug`, `Display` or an error message.

use std::fmt;

/// A password, token or key. `Debug` and `Display` print `REDACTED`; the only way to read the value is
/// [`Secret::expose`], which makes every use greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Reads the wrapped value. Call it only where the value must leave the process (stdout of `get`, a
    /// request header, a keyring write).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Secret<String> {
    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new(String::from("canary-7f3a"));
        assert_eq!(format!("{secret:?}"), "REDACTED");
        assert_eq!(format!("{secret}"), "REDACTED");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(REDACTED)");
        assert_eq!(secret.expose(), "canary-7f3a");
    }
}
