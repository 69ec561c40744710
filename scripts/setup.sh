#!/usr/bin/env bash
# Installs what Quell and its tests need on a fresh Debian machine, then builds the runbooks.
# Safe to run again: every step checks before it installs.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubectl)
# The console's tests drive headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The PostgreSQL store's tests start a real server (Debian's) in a temp directory.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# ... and make a certificate authority for its TLS tests.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The end-to-end webhook test runs the real Alertmanager; the package also installs the
# templates its Debian build hard-codes (/usr/share/prometheus/alertmanager/*.tmpl).
[ -x /usr/bin/prometheus-alertmanager ] && [ -f /usr/share/prometheus/alertmanager/default.tmpl ] \
  || need_apt+=(prometheus-alertmanager)
# scripts/validate-deploy.sh (kubernetes-validate) and Python runbooks (componentize-py,
# pytest) use tools from PyPI, in venvs.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# rust-toolchain.toml pins the toolchain; rustup may be told not to install it on its own
# (RUSTUP_AUTO_INSTALL=0), and it never adds targets on its own.
toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy --target wasm32-wasip2 >/dev/null
rustup target add --toolchain "$toolchain" wasm32-wasip2 >/dev/null

scripts/python-venv.sh
scripts/build-runbooks.sh
