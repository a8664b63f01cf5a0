//! Vendors' published API descriptions, and the check that a test server's route table stays inside them.
//!
//! The descriptions are read from `$REGKIT_SPECS_DIR`, else `../shared/specs` beside the checkout, else
//! `build/specs` (where `scripts/fetch-specs.sh` puts the upstream files in a user's clone). Every path,
//! query parameter and status a test server uses must exist in the description: test servers are written
//! from it, never from guesses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use crate::apiserver::Declared;

/// The folder holding the descriptions; fails naming the fix when there is none.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REGKIT_SPECS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let candidates = [
        workspace.join("../shared/specs"),
        workspace.join("build/specs"),
    ];
    candidates
        .iter()
        .find(|c| c.is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no API descriptions: set REGKIT_SPECS_DIR, or run scripts/fetch-specs.sh (make test does)"
            )
        })
}

/// One operation of a description.
#[derive(Debug, Clone, Default)]
pub struct Operation {
    /// Query parameter names.
    pub query: BTreeSet<String>,
    /// Response codes (`"200"`, `"default"`, …).
    pub responses: BTreeSet<String>,
}

/// An OpenAPI 3 or Swagger 2 description (YAML or JSON), reduced to what route checks need.
#[derive(Debug, Clone)]
pub struct OpenApi {
    /// Swagger 2's `basePath` (empty for OpenAPI 3, whose servers carry it).
    pub base_path: String,
    /// `(METHOD, normalised path)` → operation; path parameters are normalised to `{}`.
    pub operations: BTreeMap<(String, String), Operation>,
}

impl OpenApi {
    /// Loads `relative` (e.g. `docker-hub/hub-api-latest.extract.yaml`) from [`dir`].
    pub fn load(relative: &str) -> OpenApi {
        let path = dir().join(relative);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let document: Value = if relative.ends_with(".json") {
            serde_json::from_str(&text).expect("description JSON")
        } else {
            serde_norway::from_str(&text).expect("description YAML")
        };
        OpenApi::from_document(&document)
    }

    /// The OCI distribution spec's endpoint table (`oci-distribution/spec.v1.1.1.md`, "Endpoints"): each
    /// `end-*` row's methods, path (`<name>` → a parameter; its `?a=<…>` names the query parameters) and
    /// success and failure statuses, plus any 4XX, which the spec says any endpoint may answer ("A `4XX`
    /// response code from the registry MAY return a body…"; `UNAUTHORIZED`, `DENIED` in its error codes).
    pub fn load_oci_endpoints(relative: &str) -> OpenApi {
        let path = dir().join(relative);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut operations: BTreeMap<(String, String), Operation> = BTreeMap::new();
        for line in text.lines().filter(|line| line.starts_with("| end-")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, _, methods, target, success, failure, ..] = cells[..] else {
                continue;
            };
            let unquote = |cell: &str| cell.replace('`', "");
            let target = unquote(target);
            let (route, query) = target.split_once('?').unwrap_or((&target, ""));
            let template = route.replace('<', "{").replace('>', "}");
            let query: BTreeSet<String> = query
                .split('&')
                .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.to_owned()))
                .collect();
            let mut responses: BTreeSet<String> = format!("{success}/{failure}")
                .split('/')
                .map(|code| unquote(code).trim().to_owned())
                .filter(|code| !code.is_empty())
                .collect();
            responses.insert("4XX".into());
            for method in unquote(methods).split('/') {
                let operation = operations
                    .entry((method.trim().to_uppercase(), normalise(&template)))
                    .or_default();
                operation.query.extend(query.iter().cloned());
                operation.responses.extend(responses.iter().cloned());
            }
        }
        assert!(!operations.is_empty(), "{relative}: no endpoint table");
        OpenApi {
            base_path: String::new(),
            operations,
        }
    }

    /// Builds from a parsed document.
    pub fn from_document(document: &Value) -> OpenApi {
        let base_path = document["basePath"]
            .as_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        let mut operations = BTreeMap::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            let shared_parameters = item["parameters"].as_array().cloned().unwrap_or_default();
            for (method, operation) in item.as_object().into_iter().flatten() {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "head" | "patch" | "options"
                ) {
                    continue;
                }
                let parameters = shared_parameters
                    .iter()
                    .chain(operation["parameters"].as_array().into_iter().flatten());
                let query = parameters
                    .map(|p| resolve(document, p))
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
                let responses = operation["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(code, _)| code.clone())
                    .collect();
                operations.insert(
                    (method.to_uppercase(), normalise(path)),
                    Operation { query, responses },
                );
            }
        }
        OpenApi {
            base_path,
            operations,
        }
    }

    /// The operation for a method and a path template (with or without the base path).
    pub fn operation(&self, method: &str, template: &str) -> Option<&Operation> {
        let template = template
            .strip_prefix(self.base_path.as_str())
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(template);
        self.operations
            .get(&(method.to_uppercase(), normalise(template)))
    }

    /// Every way the declared routes leave the description; empty when they all fit.
    pub fn mismatches(&self, declared: &[Declared]) -> Vec<String> {
        let mut problems = Vec::new();
        for route in declared {
            let Some(operation) = self.operation(route.method, route.template) else {
                problems.push(format!(
                    "{} {} is not in the description",
                    route.method, route.template
                ));
                continue;
            };
            for name in route.query {
                if !operation.query.contains(*name) {
                    problems.push(format!(
                        "{} {}: query parameter {name} is not described",
                        route.method, route.template
                    ));
                }
            }
            for status in route.statuses {
                let code = status.to_string();
                let class = format!("{}XX", status / 100);
                if !operation.responses.contains(&code)
                    && !operation.responses.contains(&class)
                    && !operation.responses.contains("default")
                {
                    problems.push(format!(
                        "{} {}: status {status} is not described",
                        route.method, route.template
                    ));
                }
            }
        }
        problems
    }

    /// Panics listing every mismatch.
    pub fn assert_covers(&self, declared: &[Declared]) {
        let problems = self.mismatches(declared);
        assert!(
            problems.is_empty(),
            "the test server leaves the published description:\n{}",
            problems.join("\n")
        );
    }
}

/// Follows a local `$ref` (`#/components/parameters/x`, `#/parameters/x`).
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => document.pointer(pointer).unwrap_or(value),
        None => value,
    }
}

/// `/a/{x}/b/{y}` → `/a/{}/b/{}`, without a trailing slash.
fn normalise(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    trimmed
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_paths_parameters_and_statuses() {
        let document = serde_json::json!({
            "basePath": "/api/v2.0",
            "parameters": {"page": {"name": "page", "in": "query"}},
            "paths": {"/projects/{project_name}/repositories": {
                "parameters": [{"name": "project_name", "in": "path"}],
                "get": {"parameters": [{"$ref": "#/parameters/page"}],
                        "responses": {"200": {}, "404": {}}}
            }}
        });
        let spec = OpenApi::from_document(&document);
        let ok = Declared {
            method: "GET",
            template: "/api/v2.0/projects/{p}/repositories",
            query: &["page"],
            statuses: &[200, 404],
        };
        assert!(spec.mismatches(std::slice::from_ref(&ok)).is_empty());
        let bad = Declared {
            query: &["q"],
            statuses: &[500],
            ..ok.clone()
        };
        assert_eq!(spec.mismatches(&[bad]).len(), 2);
        let missing = Declared {
            method: "DELETE",
            ..ok
        };
        assert_eq!(spec.mismatches(&[missing]).len(), 1);
    }

    #[test]
    fn the_oci_endpoint_table_loads() {
        let spec = OpenApi::load_oci_endpoints("oci-distribution/spec.v1.1.1.md");
        let manifests = spec.operation("HEAD", "/v2/{n}/manifests/{r}").unwrap();
        assert!(manifests.responses.contains("200") && manifests.responses.contains("404"));
        let referrers = spec.operation("GET", "/v2/{n}/referrers/{d}").unwrap();
        assert!(referrers.query.contains("artifactType"));
        assert!(
            spec.operation("GET", "/v2/{n}/tags/list")
                .unwrap()
                .query
                .contains("last")
        );
    }

    #[test]
    fn published_descriptions_load() {
        for (file, method, path) in [
            (
                "docker-hub/hub-api-latest.extract.yaml",
                "GET",
                "/v2/namespaces/{namespace}/repositories/{repository}/tags",
            ),
            (
                "harbor/swagger.v2.15.2.yaml",
                "DELETE",
                "/api/v2.0/projects/{p}/repositories/{r}/artifacts/{ref}/tags/{tag}",
            ),
        ] {
            let spec = OpenApi::load(file);
            assert!(
                spec.operation(method, path).is_some(),
                "{file}: {method} {path}"
            );
        }
    }
}
