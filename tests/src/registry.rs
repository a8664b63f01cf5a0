//! Docker's distribution registry (Debian's `docker-registry`) on an ephemeral loopback port.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::bins;

/// How the registry authenticates clients.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication.
    None,
    /// htpasswd (bcrypt) with these `(user, password)` pairs.
    Htpasswd(Vec<(String, String)>),
    /// Token auth: the registry trusts tokens from `realm`, signed by the key of `cert_pem` (a PEM X.509
    /// certificate), issued by `issuer` for `service`.
    Token {
        /// The token endpoint URL clients are sent to.
        realm: String,
        /// The `service` the registry names in its challenge.
        service: String,
        /// The `iss` claim it accepts.
        issuer: String,
        /// The certificate holding the signing key's public half.
        cert_pem: String,
    },
}

/// Options for [`Registry::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Authentication mode.
    pub auth: Auth,
    /// Whether `storage.delete.enabled` is on.
    pub delete_enabled: bool,
    /// Reuse this data directory (to restart a registry over the same content).
    pub data_dir: Option<PathBuf>,
    /// Serve HTTPS with this `(certificate, key)` PEM pair (`http.tls`) instead of plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth: Auth::None,
            delete_enabled: true,
            data_dir: None,
            tls: None,
        }
    }
}

/// A running registry. Stopped (killed and reaped) on drop; its files go with it.
pub struct Registry {
    child: Child,
    addr: String,
    data_dir: PathBuf,
    tls: bool,
    _dir: TempDir,
}

impl Registry {
    /// A registry without authentication and with deletes enabled.
    pub fn start() -> Registry {
        Registry::start_with(Options::default())
    }

    /// A registry with htpasswd authentication for one user.
    pub fn start_htpasswd(user: &str, password: &str) -> Registry {
        Registry::start_with(Options {
            auth: Auth::Htpasswd(vec![(user.into(), password.into())]),
            ..Options::default()
        })
    }

    /// A registry with the given options.
    pub fn start_with(options: Options) -> Registry {
        let binary = bins::tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let auth = match &options.auth {
            Auth::None => String::new(),
            Auth::Htpasswd(users) => {
                let file = dir.path().join("htpasswd");
                write_htpasswd(&file, users);
                format!(
                    "auth:\n  htpasswd:\n    realm: regkit-test\n    path: {}\n",
                    file.display()
                )
            }
            Auth::Token {
                realm,
                service,
                issuer,
                cert_pem,
            } => {
                let cert = dir.path().join("token-cert.pem");
                fs::write(&cert, cert_pem).expect("write cert");
                format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    cert.display()
                )
            }
        };
        let tls = match &options.tls {
            Some((certificate, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:0\n  secret: regkit-test-only\n{tls}health:\n  storagedriver:\n    enabled: false\n{auth}",
            data_dir.display(),
            options.delete_enabled
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        let mut child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, receiver) = mpsc::channel();
        // The registry logs `listening on 127.0.0.1:PORT` once bound; keep draining afterwards so it never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(addr);
                    }
                }
            }
        });
        let addr = match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("docker-registry did not report its address within 20 s");
            }
        };
        Registry {
            child,
            addr,
            data_dir,
            tls: options.tls.is_some(),
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`, the registry's host as docker names it.
    pub fn host(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://` with [`Options::tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The storage root, to restart another registry over the same content.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// Runs `docker-registry garbage-collect --delete-untagged` over the storage root `data_dir`, which no
/// registry may be serving (the collector is safe only on a stopped or read-only registry): what undo
/// meets when a registry's blobs are gone.
pub fn garbage_collect(data_dir: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
            data_dir.display()
        ),
    )
    .expect("write garbage-collect config");
    let output = Command::new(bins::tool("docker-registry", "docker-registry"))
        .args(["garbage-collect", "--delete-untagged"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run docker-registry garbage-collect");
    assert!(
        output.status.success(),
        "garbage-collect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two registries with the same content, digests included: one populated, its data copied for the other.
pub struct Twins {
    /// The registry `populate` wrote to.
    pub first: Registry,
    /// The one over a copy of its data.
    pub second: Registry,
    _copy: TempDir,
}

impl Twins {
    /// Starts a registry, lets `populate` push to it, then starts another over a copy of its data.
    pub fn start(populate: impl FnOnce(&Registry)) -> Twins {
        let first = Registry::start();
        populate(&first);
        let copy = tempfile::tempdir().expect("temp dir");
        let data = copy.path().join("data");
        let copied = Command::new("cp")
            .arg("-a")
            .arg(first.data_dir())
            .arg(&data)
            .status()
            .expect("run cp");
        assert!(copied.success(), "copy the registry's data");
        let second = Registry::start_with(Options {
            data_dir: Some(data),
            ..Options::default()
        });
        Twins {
            first,
            second,
            _copy: copy,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_htpasswd(file: &Path, users: &[(String, String)]) {
    let htpasswd = bins::tool("htpasswd", "apache2-utils");
    let mut content = String::new();
    for (user, password) in users {
        let output = Command::new(&htpasswd)
            .args(["-Bbn", user, password])
            .output()
            .expect("run htpasswd");
        assert!(output.status.success(), "htpasswd failed");
        content.push_str(String::from_utf8_lossy(&output.stdout).trim());
        content.push('\n');
    }
    fs::write(file, content).expect("write htpasswd file");
}
