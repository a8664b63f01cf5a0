//! moto's server (an AWS double, PyPI `moto[server]`) on an ephemeral loopback port, for the ECR tests.
//!
//! moto is found at `$REGKIT_MOTO` or `<workspace>/build/venv/bin/moto_server` (`make test` creates that
//! virtualenv); a missing one fails the test. Programs under test reach it through the SDK endpoint
//! overrides in [`Moto::env`], with fake static credentials and IMDS disabled: nothing leaves the machine.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::Agent;

/// The account moto serves.
pub const ACCOUNT: &str = "123456789012";
/// The region the tests use.
pub const REGION: &str = "us-east-1";
/// The private registry host of [`ACCOUNT`] in [`REGION`].
pub const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// The password moto's tokens carry (`base64("AWS:<account>-auth-token")`).
pub const PASSWORD: &str = "123456789012-auth-token";
/// moto's fixed `expiresAt`: 2015-01-01T00:00:00Z.
pub const EXPIRES_AT: i64 = 1_420_070_400;

/// The moto executable; fails naming how to install it.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("REGKIT_MOTO")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("build/venv/bin/moto_server")
        });
    assert!(
        path.is_file(),
        "moto_server is required by the ECR tests and is missing at {}: run `make deps` (creates build/venv with \
         `pip install 'moto[server]'`) or set REGKIT_MOTO",
        path.display()
    );
    path
}

/// A running moto server; killed and reaped on drop.
pub struct Moto {
    child: Child,
    url: String,
    agent: Agent,
    /// Holds moto's request recording (see [`Moto::start_recording`]) until the server is gone.
    _recording: tempfile::TempDir,
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// [`Moto::start`] with extra variables in the server's environment (libfaketime's, to control
    /// `imagePushedAt`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let binary = binary();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let recording = tempfile::tempdir().expect("a directory for moto's recording");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env(
                "MOTO_RECORDER_FILEPATH",
                recording.path().join("requests.jsonl"),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let agent = Agent::new_with_config(
            Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            agent,
            _recording: recording,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited before answering: {status}");
            }
            let ready = moto
                .agent
                .get(format!("{}/moto-api/", moto.url))
                .call()
                .is_ok_and(|response| response.status() == 200);
            if ready {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {} within 30 s",
                moto.url
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Wipes every resource (between tests sharing one server).
    pub fn reset(&self) {
        let response = self
            .agent
            .post(format!("{}/moto-api/reset", self.url))
            .send_empty()
            .expect("reset moto");
        assert_eq!(response.status(), 200, "moto reset");
    }

    /// The environment of a program under test: moto as every AWS endpoint, fake static credentials,
    /// IMDS off, no profile files.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_ECR", self.url.as_str()),
            ("AWS_ENDPOINT_URL_ECR_PUBLIC", self.url.as_str()),
            ("AWS_ENDPOINT_URL_STS", self.url.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIDREGKITTEST"),
            ("AWS_SECRET_ACCESS_KEY", "regkit-test-secret"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/regkit-test/config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/regkit-test/credentials",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// One ECR API call (`AmazonEC2ContainerRegistry_V20150921.<operation>`); panics unless it succeeds.
    pub fn ecr(&self, operation: &str, body: &Value) -> Value {
        let (status, answer) = self.ecr_raw(operation, body);
        assert_eq!(status, 200, "ECR {operation}: {answer}");
        answer
    }

    /// One ECR API call; the HTTP status and the JSON answer, whatever they are.
    pub fn ecr_raw(&self, operation: &str, body: &Value) -> (u16, Value) {
        // moto routes on the SigV4 credential scope and does not check the signature.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDREGKITTEST/20150101/{REGION}/ecr/aws4_request, \
             SignedHeaders=host;x-amz-target, Signature=0000"
        );
        let mut response = self
            .agent
            .post(&self.url)
            .header(
                "X-Amz-Target",
                format!("AmazonEC2ContainerRegistry_V20150921.{operation}"),
            )
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("Authorization", authorization)
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("ECR {operation}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Creates a repository.
    pub fn create_repository(&self, name: &str) {
        self.ecr(
            "CreateRepository",
            &serde_json::json!({"repositoryName": name}),
        );
    }

    /// Pushes an image manifest under `tag` (or untagged) whose one layer is `layer` (moto derives the
    /// digest from the layer digests, so distinct layers give distinct digests). Returns the digest.
    pub fn put_image(&self, repository: &str, layer: &str, tag: Option<&str>) -> String {
        let layer_digest = format!("sha256:{:0>64}", layer);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 2,
                "digest": format!("sha256:{:0>64}", format!("c{layer}")),
            },
            "layers": [{
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 1,
                "digest": layer_digest,
            }],
        });
        let mut body = serde_json::json!({
            "repositoryName": repository,
            "imageManifest": manifest.to_string(),
        });
        if let Some(tag) = tag {
            body["imageTag"] = Value::from(tag);
        }
        let answer = self.ecr("PutImage", &body);
        answer["image"]["imageId"]["imageDigest"]
            .as_str()
            .expect("PutImage answers the digest")
            .to_owned()
    }

    /// Pushes an OCI image index listing `children` (digests in `repository`) under `tag` (or untagged).
    /// Returns the digest.
    pub fn put_index(&self, repository: &str, children: &[&str], tag: Option<&str>) -> String {
        let manifests: Vec<Value> = children
            .iter()
            .map(|digest| {
                serde_json::json!({
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "size": 1,
                    "digest": digest,
                })
            })
            .collect();
        let media_type = "application/vnd.oci.image.index.v1+json";
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        })
        .to_string();
        self.put_manifest(repository, &index, media_type, tag)
    }

    /// Pushes the manifest document `manifest` of `media_type` under `tag` (or untagged), with its own
    /// sha256 (moto would derive one from the layers, or make one up). Returns the digest.
    pub fn put_manifest(
        &self,
        repository: &str,
        manifest: &str,
        media_type: &str,
        tag: Option<&str>,
    ) -> String {
        let digest = crate::images::sha256_digest(manifest.as_bytes());
        let mut body = serde_json::json!({
            "repositoryName": repository,
            "imageManifest": manifest,
            "imageManifestMediaType": media_type,
            "imageDigest": digest,
        });
        if let Some(tag) = tag {
            body["imageTag"] = Value::from(tag);
        }
        self.ecr("PutImage", &body);
        digest
    }

    /// Starts moto's request recorder afresh: [`Moto::operations`] counts what reaches the server from now.
    pub fn start_recording(&self) {
        for step in ["reset-recording", "start-recording"] {
            let response = self
                .agent
                .post(format!("{}/moto-api/recorder/{step}", self.url))
                .send_empty()
                .unwrap_or_else(|e| panic!("moto recorder {step}: {e}"));
            assert_eq!(response.status(), 200, "moto recorder {step}");
        }
    }

    /// The ECR operations moto received since [`Moto::start_recording`], by name, with their counts.
    pub fn operations(&self) -> std::collections::BTreeMap<String, usize> {
        let mut response = self
            .agent
            .get(format!("{}/moto-api/recorder/download-recording", self.url))
            .call()
            .expect("download moto's recording");
        assert_eq!(response.status(), 200, "moto recording");
        let text = response.body_mut().read_to_string().expect("recording");
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let entry: Value = serde_json::from_str(line).expect("a recorded request");
            let target = entry["headers"]
                .as_object()
                .and_then(|headers| {
                    headers
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))
                })
                .and_then(|(_, value)| value.as_str())
                .map_or("(no X-Amz-Target)", |target| {
                    target.rsplit('.').next().unwrap_or(target)
                });
            *counts.entry(target.to_owned()).or_insert(0) += 1;
        }
        counts
    }

    /// Every tag of `repository` → its digest, from DescribeImages.
    pub fn tags(&self, repository: &str) -> std::collections::BTreeMap<String, String> {
        let answer = self.ecr(
            "DescribeImages",
            &serde_json::json!({"repositoryName": repository}),
        );
        let mut tags = std::collections::BTreeMap::new();
        for image in answer["imageDetails"].as_array().expect("imageDetails") {
            let digest = image["imageDigest"].as_str().expect("digest").to_owned();
            for tag in image["imageTags"].as_array().into_iter().flatten() {
                tags.insert(tag.as_str().expect("tag").to_owned(), digest.clone());
            }
        }
        tags
    }

    /// Stops the server now (to prove a later step needs no network).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// moto has no ECR Public, so its one call the helper makes is answered by this loopback double, which
/// records each request's `X-Amz-Target` and SigV4 credential scope.
pub struct EcrPublicDouble {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

/// The password of [`EcrPublicDouble`]'s tokens.
pub const PUBLIC_PASSWORD: &str = "ecr-public-test-token";

impl EcrPublicDouble {
    /// Starts the double on a free loopback port; it serves until the test process ends.
    pub fn start() -> EcrPublicDouble {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::{Arc, Mutex};

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the ECR Public double");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream);
                let (mut target, mut scope, mut length) = (String::new(), String::new(), 0usize);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                    if let Some((name, value)) = line.split_once(':') {
                        let value = value.trim().to_owned();
                        match name.to_ascii_lowercase().as_str() {
                            "x-amz-target" => target = value,
                            "authorization" => {
                                scope = value
                                    .split("Credential=")
                                    .nth(1)
                                    .and_then(|rest| rest.split(',').next())
                                    .and_then(|credential| credential.split_once('/'))
                                    .map(|(_, scope)| scope.to_owned())
                                    .unwrap_or_default();
                            }
                            "content-length" => length = value.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                recorded.lock().expect("requests").push((target, scope));
                let token = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("AWS:{PUBLIC_PASSWORD}"),
                );
                let answer = format!(
                    "{{\"authorizationData\":{{\"authorizationToken\":\"{token}\",\"expiresAt\":{EXPIRES_AT}}}}}"
                );
                let _ = write!(
                    reader.get_mut(),
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        EcrPublicDouble { url, requests }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `(X-Amz-Target, credential scope without the key id)` of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().expect("requests").clone()
    }
}
