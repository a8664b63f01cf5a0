//! The end-to-end suite as one test binary: each module was its own binary once, and every one of them
//! linked the whole harness and `regkit` again (28 links per change to the harness). Run one suite with
//! `cargo test -p regkit-e2e --test e2e <module>::`.
//!
//! All modules share one process: a test must not change process-wide state (environment variables, the
//! current directory); each sets what its child processes need on their `Command`.

mod acr_cleanup;
mod acr_login;
mod ci_templates;
mod cleanup;
mod dockerconfig;
mod ecr_cleanup;
mod ecr_login;
mod ecr_policy;
mod env;
mod everyday;
mod faults;
mod gcr_cleanup;
mod gcr_login;
mod hostile;
mod inuse;
mod keyring;
mod kubelet;
mod newcomer;
mod packaging;
mod policy_cleanup;
mod policy_vendors;
mod referrers;
mod registry_client;
mod router;
mod scale;
mod secrets;
mod undo;
mod vendor_artifactory;
mod vendor_dockerhub;
mod vendor_github;
mod vendor_gitlab;
mod vendor_harbor;
mod vendor_nexus;
mod vendor_quay;
