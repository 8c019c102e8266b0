#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests, and
# the Prometheus / Alertmanager stack with the real binaries (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "test.sh: cargo is not installed (https://rustup.rs)" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if need rustup; then rustup component add "$component"; else
      echo "test.sh: cargo $component is missing" >&2; exit 1
    fi
  fi
done
# The real Prometheus, promtool, Alertmanager, amtool, docker-compose and Chromium run in the tests.
missing=()
need promtool && need prometheus || missing+=(prometheus)
need prometheus-alertmanager && need amtool || missing+=(prometheus-alertmanager)
need docker-compose || missing+=(docker-compose)
# The web pages and the report are tested in the real headless Chromium.
need chromium || need chromium-browser || need google-chrome || [ -n "${CHROMIUM:-}" ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if need sudo; then sudo="sudo"; else
      echo "test.sh: please install the Debian packages: ${missing[*]}" >&2; exit 1
    fi
  fi
  echo "== installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
# The integration tests mostly wait on simulated miners and timeouts (a run uses about a
# fifth of one core), so four run at once: the suite takes minutes, not a quarter hour.
cargo test --locked -- --test-threads "${TEST_THREADS:-4}" --skip availability::
echo "== cargo test availability:: (alone)"
# The availability tests flood the exporter with idle connections and scrapes and judge how
# it copes: run one at a time, with nothing else loading the machine, so no other test's
# load is mistaken for theirs.
cargo test --locked --test integration -- --test-threads 1 availability::
