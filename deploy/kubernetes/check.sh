#!/usr/bin/env bash
# Checks the Kubernetes kit without a cluster (run by .ci/run):
#   1. every manifest validates against the Kubernetes OpenAPI schemas bundled
#      with kubernetes-validate (PyPI; offline), strictly (unknown fields are
#      errors), for the oldest supported version (1.30: preStop sleep) and the
#      newest bundled one; a broken manifest is rejected (the check bites);
#   2. the ConfigMap's weir.yaml passes `weir check` (certificate paths
#      pointed at a throw-away certificate, the token from the environment);
#   3. terminationGracePeriodSeconds covers preStop + weir's stop notice +
#      grace_period_seconds + graceful_shutdown_timeout_seconds.
# Usage: deploy/kubernetes/check.sh PATH_TO_WEIR_BINARY
set -euo pipefail
weir=$(realpath "${1:?usage: check.sh PATH_TO_WEIR}")
cd "$(dirname "$0")"
command -v kubernetes-validate >/dev/null || pip3 install --quiet kubernetes-validate

manifests=(namespace.yaml configmap.yaml deployment.yaml service.yaml pdb.yaml app.yaml secrets.example.yaml)
for version in 1.30.0 ""; do
  kubernetes-validate --strict ${version:+-k "$version"} "${manifests[@]}"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: "45"/' deployment.yaml > "$tmp/broken.yaml"
if kubernetes-validate --strict "$tmp/broken.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted a broken manifest" >&2
  exit 1
fi

python3 - "$tmp" <<'PY'
import sys, yaml
tmp = sys.argv[1]
cm = yaml.safe_load(open("configmap.yaml"))
text = cm["data"]["weir.yaml"].replace("/etc/weir-tls/", tmp + "/")
open(tmp + "/weir.yaml", "w").write(text)
conf = yaml.safe_load(text)
dep = yaml.safe_load(open("deployment.yaml"))
pod = dep["spec"]["template"]["spec"]
pre = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
notice = 1  # weir::shutdown::STOP_NOTICE
need = pre + notice + conf["server"]["grace_period_seconds"] + conf["server"]["graceful_shutdown_timeout_seconds"]
have = pod["terminationGracePeriodSeconds"]
assert conf["watch"] is True, "the ConfigMap config must set watch: true"
assert have >= need + 5, f"terminationGracePeriodSeconds {have} < {need} + 5 s margin"
print(f"terminationGracePeriodSeconds {have} >= {need} + margin")
PY
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=weir.example -days 30 \
  -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
WEIR_ADMIN_TOKEN=check-token-0123456789abcdef "$weir" check -c "$tmp/weir.yaml"
echo "kubernetes kit: ok"
