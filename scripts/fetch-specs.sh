#!/usr/bin/env bash
# The vendor API descriptions the test servers are checked against. Where the project's reference folder
# (../shared/specs) or $REGKIT_SPECS_DIR is present this does nothing; in a plain clone it downloads the
# upstream files into build/specs under the same names (the full upstream documents, of which the
# reference folder keeps extracts: every check passes on either). Provenance: the commit of each file.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${REGKIT_SPECS_DIR:-}" ] || [ -d ../shared/specs ]; then
  exit 0
fi
out=build/specs
[ -f "$out/.complete" ] && exit 0
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

raw() { # repo commit path dest
  mkdir -p "$out/$(dirname "$4")"
  curl -fsSL --retry 3 -o "$out/$4" "https://raw.githubusercontent.com/$1/$2/$3"
}

raw docker/docs c065f8002e74b9ef1a9a5afe638f8ae13da5193d content/reference/api/hub/latest.yaml \
  docker-hub/hub-api-latest.extract.yaml
raw goharbor/harbor 080b0220574cc853ae1e2946ce7a5610ba855757 api/v2.0/swagger.yaml harbor/swagger.v2.15.2.yaml
raw gitlabhq/gitlabhq 0338625c4996c8b4dde44bd86d1767b654121ee7 doc/api/openapi/openapi_v2.yaml \
  gitlab/openapi_v2.container-registry.extract.yaml
raw Azure/azure-rest-api-specs 0a12deade9fce121ddece635ca65c590783aa3c0 \
  specification/containerregistry/data-plane/Registry/stable/2021-07-01/containerregistry.json \
  azure-acr/containerregistry.2021-07-01.extract.json

# GitHub's description, as republished on npm by @octokit/openapi.
(cd "$tmp" && npm pack --silent @octokit/openapi@23.0.2 >/dev/null && tar -xzf octokit-openapi-23.0.2.tgz)
mkdir -p "$out/github"
cp "$tmp/package/generated/api.github.com.json" "$out/github/api.github.com.packages-extract.json"

# The AWS ECR models ship in botocore; Artifact Registry's discovery document in google-api-python-client.
python3 -m pip download --quiet --no-deps -d "$tmp" botocore==1.44.8 google-api-python-client==2.202.0
(cd "$tmp" && python3 -m zipfile -e botocore-1.44.8-*.whl botocore && \
  python3 -m zipfile -e google_api_python_client-2.202.0-*.whl gapi)
mkdir -p "$out/aws-ecr" "$out/google-artifact-registry"
for model in ecr/2015-09-21:ecr-2015-09-21 ecr-public/2020-10-30:ecr-public-2020-10-30; do
  src=${model%%:*} dst=${model##*:}
  gunzip -c "$tmp/botocore/botocore/data/$src/service-2.json.gz" > "$out/aws-ecr/$dst-service-2.json"
  cp "$tmp/botocore/botocore/data/$src/paginators-1.json" "$out/aws-ecr/$dst-paginators-1.json"
done
cp "$tmp/gapi/googleapiclient/discovery_cache/documents/artifactregistry.v1.json" \
  "$out/google-artifact-registry/artifactregistry.v1.discovery.json"
touch "$out/.complete"
