//! A throwaway PKI for TLS tests: a CA and a server certificate for 127.0.0.1 (and its IPv4-mapped IPv6
//! form) signed by it, made with the openssl CLI. webpki refuses a CA certificate as a server's own, so the
//! server gets a leaf.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::bins;

/// The files: `ca.pem` (trust this), `server.pem` and `server.key` (serve with these). Removed on drop.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// Makes a fresh CA and server certificate, valid for a day.
    pub fn new() -> Pki {
        let openssl = bins::tool("openssl", "openssl");
        let dir = tempfile::tempdir().expect("temp dir");
        let run = |args: &[&str]| {
            let status = Command::new(&openssl)
                .args(args)
                .current_dir(dir.path())
                .stderr(Stdio::null())
                .status()
                .expect("run openssl");
            assert!(status.success(), "openssl {args:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=regkit-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,IP:::ffff:127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-copy_extensions",
            "copyall",
            "-out",
            "server.pem",
        ]);
        Pki { dir }
    }

    /// The path of one of the files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
