//! The Kubernetes half of the in-use scan: every context of the kubeconfig (`KUBECONFIG`, which may list
//! several files, else `~/.kube/config`), each kind that runs or can roll back to an image, listed in pages
//! of [`PAGE`] across all namespaces (or the namespaces asked for), one LIST per kind per context.
//!
//! Without a kubeconfig, inside a Pod (`KUBERNETES_SERVICE_HOST` set), the Pod's service account is used
//! as the context `in-cluster`.
//!
//! The kubeconfig is read by kube-rs, so tokens, token files, client certificates, exec credential
//! plugins, proxies and `insecure-skip-tls-verify` behave as kubectl's do. Fail closed: a context that
//! cannot be read in full is an error for the whole run, never a smaller set.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ContainerStatus, Pod, PodSpec, PodTemplateSpec, ReplicationController,
};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Image, InUse, Source};
use crate::registry::pager::{Page, Pager, Unbounded};

/// Objects per LIST request (kubectl's `--chunk-size` default).
pub const PAGE: u32 = 500;

/// How long one request may take, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Only these contexts (`--kube-context`); every context when empty.
    pub contexts: Vec<String>,
    /// Only these namespaces (`--kube-namespace`); every namespace when empty.
    pub namespaces: Vec<String>,
    /// The bound on each request (connect, send, answer).
    pub timeout: Duration,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            contexts: Vec::new(),
            namespaces: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

const WAY_OUT: &str = "nothing was deleted; pass --kube-context to scan only other contexts, or --without-kube to skip the scan knowingly";

/// Why the scan could not say what is in use; the cleanup must not go on.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The kubeconfig exists but cannot be read or merged.
    #[error(
        "cannot read the kubeconfig {files}: {error}; nothing was deleted; fix it, or pass --without-kube to skip the scan knowingly"
    )]
    Kubeconfig {
        /// The files read.
        files: String,
        /// The reader's complaint.
        error: String,
    },
    /// `--kube-context` names a context the kubeconfig does not have, or there is no kubeconfig for it.
    #[error("--kube-context {context}: no such context in {files} (contexts: {known})")]
    NoSuchContext {
        /// The name asked for.
        context: String,
        /// The kubeconfig files.
        files: String,
        /// The contexts there are.
        known: String,
    },
    /// A context could not be read in full.
    #[error("Kubernetes context {context}: {error}; {WAY_OUT}")]
    Context {
        /// The context.
        context: String,
        /// What failed.
        error: String,
    },
}

/// A failed LIST, before it is named by its context.
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error("{0}")]
    Kube(String),
    #[error("{0}")]
    Unbounded(#[from] Unbounded),
}

/// The kubeconfig files that exist, in `KUBECONFIG` order (missing ones are skipped, as kubectl does), or
/// `~/.kube/config`.
fn kubeconfig_files() -> Vec<PathBuf> {
    let listed: Vec<PathBuf> = std::env::var_os("KUBECONFIG")
        .map(|value| {
            std::env::split_paths(&value)
                .filter(|path| !path.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let candidates = if listed.is_empty() {
        std::env::home_dir()
            .map(|home| vec![home.join(".kube").join("config")])
            .unwrap_or_default()
    } else {
        listed
    };
    candidates
        .into_iter()
        .filter(|path| path.is_file())
        .collect()
}

fn describe(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|file| file.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds what every workload of the kubeconfig's contexts uses to `set`. Without a kubeconfig, nothing is
/// scanned and `set.scanned` says so.
pub async fn scan(set: &mut InUse, options: &ScanOptions) -> Result<(), ScanError> {
    let files = kubeconfig_files();
    let named = describe(&files);
    if files.is_empty()
        && options.contexts.is_empty()
        && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
    {
        // Inside a Pod (the packaged CronJob) the service account is the cluster's credential.
        let config = Config::incluster()
            .map_err(|error| format!("cannot use the Pod's service account: {error}"));
        return scan_each(set, [(IN_CLUSTER.to_string(), config)], options).await;
    }
    if files.is_empty() {
        if let Some(context) = options.contexts.first() {
            return Err(ScanError::NoSuchContext {
                context: context.clone(),
                files: "(no kubeconfig)".into(),
                known: "none".into(),
            });
        }
        set.scanned.push(
            "kubernetes: no kubeconfig (KUBECONFIG names no file that exists, and there is no ~/.kube/config): nothing scanned"
                .into(),
        );
        return Ok(());
    }
    let kubeconfig = files
        .iter()
        .try_fold(Kubeconfig::default(), |merged, file| {
            Kubeconfig::read_from(file).and_then(|next| merged.merge(next))
        })
        .map_err(|error| ScanError::Kubeconfig {
            files: named.clone(),
            error: error.to_string(),
        })?;
    let known: Vec<String> = kubeconfig
        .contexts
        .iter()
        .map(|context| context.name.clone())
        .collect();
    let contexts = if options.contexts.is_empty() {
        known.clone()
    } else {
        for context in &options.contexts {
            if !known.contains(context) {
                return Err(ScanError::NoSuchContext {
                    context: context.clone(),
                    files: named,
                    known: known.join(", "),
                });
            }
        }
        options.contexts.clone()
    };
    if contexts.is_empty() {
        set.scanned.push(format!(
            "kubernetes: {named} has no context: nothing scanned"
        ));
    }
    let mut configs = Vec::new();
    for context in contexts {
        let entry = KubeConfigOptions {
            context: Some(context.clone()),
            ..KubeConfigOptions::default()
        };
        let config = Config::from_custom_kubeconfig(kubeconfig.clone(), &entry)
            .await
            .map_err(|error| format!("cannot use its kubeconfig entry: {error}"));
        configs.push((context, config));
    }
    scan_each(set, configs, options).await
}

/// The name the in-cluster configuration is reported under.
const IN_CLUSTER: &str = "in-cluster";

/// Scans each context in turn; the first that fails ends the scan.
async fn scan_each(
    set: &mut InUse,
    configs: impl IntoIterator<Item = (String, Result<Config, String>)>,
    options: &ScanOptions,
) -> Result<(), ScanError> {
    for (context, config) in configs {
        let scanned = match config {
            Ok(config) => scan_context(set, config, &context, options).await,
            Err(error) => Err(error),
        };
        let objects = scanned.map_err(|error| ScanError::Context {
            context: context.clone(),
            error,
        })?;
        set.scanned.push(format!(
            "kubernetes context {context}: {objects} object(s) read"
        ));
    }
    Ok(())
}

/// The client of one context, with every request bounded.
fn client(mut config: Config, timeout: Duration) -> Result<Client, String> {
    // rustls is built with ring only; an error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    config.reset_reader_on_write = true;
    Client::try_from(config).map_err(|error| format!("cannot build its client: {error}"))
}

/// Scans one context; the number of objects read.
async fn scan_context(
    set: &mut InUse,
    config: Config,
    context: &str,
    options: &ScanOptions,
) -> Result<usize, String> {
    let client = client(config, options.timeout)?;
    let lister = Lister {
        client: &client,
        context,
        options,
    };
    let mut objects = 0;
    for pod in lister.list::<Pod>().await? {
        objects += 1;
        let source = lister.source("Pod", &pod);
        if let Some(spec) = &pod.spec {
            add_spec(set, spec, &source);
        }
        if let Some(status) = &pod.status {
            let statuses = [
                &status.container_statuses,
                &status.init_container_statuses,
                &status.ephemeral_container_statuses,
            ];
            for status in statuses.into_iter().flatten().flatten() {
                add_running(set, pod.spec.as_ref(), status, &source);
            }
        }
    }
    objects += lister
        .templates::<Deployment>(set, "Deployment", |d| d.spec.as_ref().map(|s| &s.template))
        .await?;
    objects += lister
        .templates::<ReplicaSet>(set, "ReplicaSet", |r| r.spec.as_ref()?.template.as_ref())
        .await?;
    objects += lister
        .templates::<StatefulSet>(set, "StatefulSet", |s| s.spec.as_ref().map(|s| &s.template))
        .await?;
    objects += lister
        .templates::<DaemonSet>(set, "DaemonSet", |d| d.spec.as_ref().map(|s| &s.template))
        .await?;
    objects += lister
        .templates::<Job>(set, "Job", |j| j.spec.as_ref().map(|s| &s.template))
        .await?;
    objects += lister
        .templates::<CronJob>(set, "CronJob", |c| {
            Some(&c.spec.as_ref()?.job_template.spec.as_ref()?.template)
        })
        .await?;
    objects += lister
        .templates::<ReplicationController>(set, "ReplicationController", |r| {
            r.spec.as_ref()?.template.as_ref()
        })
        .await?;
    Ok(objects)
}

struct Lister<'a> {
    client: &'a Client,
    context: &'a str,
    options: &'a ScanOptions,
}

impl Lister<'_> {
    fn source<K: Resource>(&self, kind: &'static str, object: &K) -> Source {
        let meta = object.meta();
        Source::Workload {
            context: self.context.to_string(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            kind,
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    /// Adds the pod template of every object of one kind; the number of objects.
    async fn templates<K>(
        &self,
        set: &mut InUse,
        kind: &'static str,
        template: impl Fn(&K) -> Option<&PodTemplateSpec>,
    ) -> Result<usize, String>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let objects = self.list::<K>().await?;
        for object in &objects {
            if let Some(spec) = template(object).and_then(|template| template.spec.as_ref()) {
                add_spec(set, spec, &self.source(kind, object));
            }
        }
        Ok(objects.len())
    }

    /// Every object of one kind, across all namespaces or in each namespace asked for, page by page.
    async fn list<K>(&self) -> Result<Vec<K>, String>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let plural = K::plural(&K::DynamicType::default()).into_owned();
        let apis: Vec<(String, Api<K>)> = if self.options.namespaces.is_empty() {
            vec![(plural.clone(), Api::all(self.client.clone()))]
        } else {
            self.options
                .namespaces
                .iter()
                .map(|namespace| {
                    (
                        format!("{plural} in namespace {namespace}"),
                        Api::namespaced(self.client.clone(), namespace),
                    )
                })
                .collect()
        };
        let mut objects = Vec::new();
        for (what, api) in apis {
            let operation = format!("list {what}");
            let timeout = self.options.timeout;
            let pager = Pager::new(self.context, &operation, "continue").empty_pages_continue();
            let listed = pager
                .collect(|cursor: Option<String>| {
                    let api = &api;
                    let what = &what;
                    async move {
                        let mut params = ListParams::default().limit(PAGE);
                        if let Some(cursor) = &cursor {
                            params = params.continue_token(cursor);
                        }
                        let page = match tokio::time::timeout(timeout, api.list(&params)).await {
                            Ok(Ok(page)) => page,
                            Ok(Err(error)) => {
                                return Err(ListError::Kube(format!(
                                    "cannot list {what}: {error}"
                                )));
                            }
                            Err(_) => {
                                return Err(ListError::Kube(format!(
                                    "cannot list {what}: no answer within {}s",
                                    timeout.as_secs()
                                )));
                            }
                        };
                        let next = page
                            .metadata
                            .continue_
                            .clone()
                            .filter(|next| !next.is_empty());
                        let content: Vec<(Option<String>, String)> = page
                            .items
                            .iter()
                            .map(|item| (item.namespace(), item.name_any()))
                            .collect();
                        Ok(Page::new(page.items, next, content))
                    }
                })
                .await
                .map_err(|error| error.to_string())?;
            objects.extend(listed);
        }
        Ok(objects)
    }
}

/// Adds an image string found in a workload; one that is not a reference is skipped with a note.
fn add_image(set: &mut InUse, image: Option<&str>, source: &Source) {
    let Some(text) = image.filter(|text| !text.is_empty()) else {
        return;
    };
    match Image::parse(text) {
        Ok(image) => set.add(image, source.clone()),
        Err(error) => set.skipped.push(format!("{source}: {error}")),
    }
}

fn add_spec(set: &mut InUse, spec: &PodSpec, source: &Source) {
    let containers = spec.containers.iter().map(|c| c.image.as_deref());
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.image.as_deref());
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| c.image.as_deref());
    for image in containers.chain(init).chain(ephemeral) {
        add_image(set, image, source);
    }
}

/// The digest a container was started from (`imageID`), which stays in use even when its tag has moved
/// since. An `imageID` that is only a local image ID (`sha256:…`, no repository) names no manifest.
fn add_running(set: &mut InUse, spec: Option<&PodSpec>, status: &ContainerStatus, source: &Source) {
    let id = status.image_id.as_str();
    if id.is_empty() || !id.contains('@') {
        return;
    }
    match Image::parse(id) {
        Ok(mut running) => {
            // The runtime's repository is the spec's; say which tag it was started for when the names agree.
            let written = spec.and_then(|spec| {
                spec.containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|container| container.name == status.name)
                    .and_then(|container| Image::parse(container.image.as_deref()?).ok())
            });
            if let Some(written) = written.filter(|w| w.repository == running.repository) {
                running.tag = written.tag;
            }
            set.add(running, source.clone());
        }
        Err(error) => set.skipped.push(format!("{source}: imageID: {error}")),
    }
}
