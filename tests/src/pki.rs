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
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.openssl(&[
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
        pki.leaf(
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1,IP:::ffff:127.0.0.1",
        );
        pki
    }

    /// Makes a client certificate for `name` signed by the CA (`client.pem`, `client.key`), for servers that
    /// authenticate clients by certificate (a Kubernetes API server's kubeconfig `client-certificate-data`).
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        self.leaf("client", name, "extendedKeyUsage=clientAuth");
        (self.path("client.pem"), self.path("client.key"))
    }

    /// `{file}.pem` and `{file}.key`: a key and a certificate for `common_name` with `extension`, signed by the
    /// CA.
    fn leaf(&self, file: &str, common_name: &str, extension: &str) {
        let (key, csr, pem) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.pem"),
        );
        let subject = format!("/CN={common_name}");
        self.openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-addext", extension,
            "-keyout", &key, "-out", &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
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
            &pem,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let status = Command::new(bins::tool("openssl", "openssl"))
            .args(args)
            .current_dir(self.dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?}");
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
