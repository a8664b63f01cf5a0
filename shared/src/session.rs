//! What every `regkit` command does before its first registry request: credentials from the docker
//! config, a v2 client, the implementation (forced, else by host, else by probing the host), built with
//! the run's settings. [`Session::connect`] does it once per registry; the CLI only prints.

use crate::dockerconfig::{AuthSource, DockerConfig, RegistryAuth};
use crate::implementation::{self, Context, DetectedBy, Detection, Implementation, Settings};
use crate::registry::{Client, ClientOptions, RegistryError};

/// The choices of one run that apply to every registry it reaches.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// `--repo-implementation`: a name, `auto` or nothing to detect.
    pub implementation: Option<String>,
    /// Transport options for every client (insecure, TLS verification, CA file).
    pub client: ClientOptions,
    /// How many registry requests may run at once.
    pub parallel: usize,
}

/// A run's docker config, vendor settings and options.
pub struct Session {
    config: DockerConfig,
    settings: Settings,
    options: SessionOptions,
}

/// Everything needed to list and delete in one registry.
pub struct Connection {
    /// The implementation chosen for the registry.
    pub implementation: Box<dyn Implementation>,
    /// A v2 client with the same credentials (image configs, indexes, `_catalog`).
    pub client: Client,
    /// Which implementation was chosen, and why.
    pub detection: Detection,
    /// The credentials used (never printed: see [`crate::dockerconfig::RegistryAuth`]).
    pub auth: RegistryAuth,
    /// Where they came from.
    pub source: AuthSource,
}

impl Session {
    /// A session over `config` with the vendor flags in `settings`.
    pub fn new(config: DockerConfig, settings: Settings, options: SessionOptions) -> Session {
        Session {
            config,
            settings,
            options,
        }
    }

    /// The docker config the session reads credentials from.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The session's options.
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// The implementation for `registry`: forced, else from the host, else by probing the host for
    /// self-hosted products (Harbor, Nexus, Artifactory) over `client`'s connections, else plain v2.
    /// A forced name that is unknown is [`RegistryError::Config`].
    pub async fn detect(
        &self,
        registry: &str,
        client: &Client,
    ) -> Result<Detection, RegistryError> {
        let detection = implementation::detect(registry, self.options.implementation.as_deref())
            .map_err(|error| RegistryError::Config(error.to_string()))?;
        if detection.by != DetectedBy::Fallback {
            return Ok(detection);
        }
        Ok(implementation::probe(client).await.unwrap_or(detection))
    }

    /// A client without credentials, for commands that only probe or describe.
    pub fn anonymous_client(&self, registry: &str) -> Result<Client, RegistryError> {
        Client::new(registry, RegistryAuth::Anonymous, &self.options.client)
    }

    /// The credentials the docker config gives `registry`; a helper that fails is
    /// [`RegistryError::Config`].
    pub fn credentials(&self, registry: &str) -> Result<(RegistryAuth, AuthSource), RegistryError> {
        self.config.credentials_for(registry).map_err(|error| {
            RegistryError::Config(format!("cannot get credentials for {registry}: {error}"))
        })
    }

    /// Credentials, client and implementation for `registry`.
    pub async fn connect(&self, registry: &str) -> Result<Connection, RegistryError> {
        let (auth, source) = self.credentials(registry)?;
        let client = Client::new(registry, auth.clone(), &self.options.client)?;
        let detection = self.detect(registry, &client).await?;
        let context = Context {
            client: client.clone(),
            auth: auth.clone(),
            parallel: self.options.parallel,
            settings: self.settings.clone(),
        };
        let implementation = implementation::build(detection.name, context)
            .map_err(|error| RegistryError::Config(error.to_string()))?;
        Ok(Connection {
            implementation,
            client,
            detection,
            auth,
            source,
        })
    }
}

/// What a run tells its caller while it works (progress bars, `--verbose`). Every method has a silent
/// default.
pub trait Observer {
    /// `registry` is connected (implementation and credentials chosen).
    fn connected(&self, _registry: &str, _connection: &Connection) {}
    /// A step of `total` units begins; `label` names it when it is more than the deletion itself.
    fn begin(&self, _total: usize, _label: Option<&str>) {}
    /// `units` more are done.
    fn advance(&self, _units: u64) {}
    /// The step is over.
    fn end(&self) {}
    /// One more repository of a step counting repositories is planned, with `rows` tags and manifests.
    fn planned(&self, _rows: usize) {}
}
