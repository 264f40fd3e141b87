#!/usr/bin/env bash
# Installs what the stack and the tests need, skipping what is already there. Safe to re-run.
source "$(dirname "$0")/lib.sh"

apt_packages=()
[[ -n "$PG_BIN" && -x "$PG_BIN/postgres" ]] || apt_packages+=(postgresql)
command -v java >/dev/null || apt_packages+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || apt_packages+=(maven)
command -v kcat >/dev/null || apt_packages+=(kcat)
# The dashboard's browser test (tests/integration/test_dashboard.py) drives Debian's Chromium through Playwright
# (no browser download), and the page needs a CJK font to show its Chinese.
command -v chromium >/dev/null || apt_packages+=(chromium)
dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q "ok installed" || apt_packages+=(fonts-noto-cjk)
# Stats' analysis reports: WeasyPrint renders through Pango and subsets the embedded fonts with HarfBuzz; the
# report tests read the PDF back with poppler (pdftotext, pdftoppm, pdffonts).
for package in libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || apt_packages+=("$package")
done
command -v pdftotext >/dev/null || apt_packages+=(poppler-utils)
if ((${#apt_packages[@]})); then
  [[ $EUID -eq 0 ]] || die "missing ${apt_packages[*]}: run as root once, or install them"
  say "installing ${apt_packages[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi

if ! command -v uv >/dev/null; then
  say "installing uv"
  python3 -m pip install -q --disable-pip-version-check uv 2>&1 | grep -v "WARNING: Running pip as the 'root'" || true
fi
say "syncing the Python workspace (uv sync --frozen)"
(cd "$ROOT" && uv sync --frozen --python python3.11 --quiet)

# Apache Kafka from Maven Central: the jars named in deploy/local/kafka/pom.xml.
stamp="$KAFKA_HOME/libs/.pom-$(sha1sum "$ROOT/deploy/local/kafka/pom.xml" | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  say "fetching Apache Kafka jars from Maven Central"
  rm -rf "$KAFKA_HOME/libs.tmp"
  mvn -q -B -f "$ROOT/deploy/local/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs.tmp" >"$LOGS/maven.log" 2>&1 \
    || die "maven could not fetch the Kafka jars; see $LOGS/maven.log"
  rm -rf "$KAFKA_HOME/libs" && mv "$KAFKA_HOME/libs.tmp" "$KAFKA_HOME/libs" && touch "$stamp"
fi

# The contract checker (tools/contract-check: @asyncapi/parser, run by tests/contract/test_published_documents.py),
# exactly as package-lock.json pins it. Skipped while node_modules matches the manifest and the lockfile (npm ci
# empties node_modules first, so the stamp goes with it). Install scripts are not run: the parser needs none.
checker="$ROOT/tools/contract-check"
stamp="$checker/node_modules/.installed-$(cat "$checker/package.json" "$checker/package-lock.json" | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  if ! command -v npm >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
    say "Node.js 20+ with npm not found: not installing tools/contract-check (make test's AsyncAPI check will fail)"
  else
    say "installing the contract checker's npm packages (npm ci in tools/contract-check)"
    (cd "$checker" && npm ci --ignore-scripts --no-audit --no-fund) >"$LOGS/npm.log" 2>&1 \
      || die "npm ci failed in tools/contract-check; see $LOGS/npm.log"
    touch "$stamp"
  fi
fi

# axe-core, which the console's browser test (tests/integration/test_console_browser.py) injects into every page
# it visits, exactly as tests/browser/package-lock.json pins it; skipped while node_modules matches, as above.
browser_tests="$ROOT/tests/browser"
stamp="$browser_tests/node_modules/.installed-$(cat "$browser_tests/package.json" "$browser_tests/package-lock.json" | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  if ! command -v npm >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
    say "Node.js 20+ with npm not found: not installing axe-core (tests/integration/test_console_browser.py fails)"
  else
    say "installing axe-core for the browser tests (npm ci in tests/browser)"
    (cd "$browser_tests" && npm ci --ignore-scripts --no-audit --no-fund) >"$LOGS/npm-browser-tests.log" 2>&1 \
      || die "npm ci failed in tests/browser; see $LOGS/npm-browser-tests.log"
    touch "$stamp"
  fi
fi

# The stats dashboard's chart library and map (tools/dashboard: Apache ECharts, and ECharts 4.9 for its Sichuan
# city boundaries), exactly as package-lock.json pins them, copied into the stats service's static files (no
# CDN: a government intranet reaches none). npm ci is skipped while node_modules matches, as above; the copy
# (tools/dashboard/vendor.cjs, which checks versions and the map) is made every time.
dashboard="$ROOT/tools/dashboard"
stamp="$dashboard/node_modules/.installed-$(cat "$dashboard/package.json" "$dashboard/package-lock.json" | sha1sum | cut -c1-12)"
if ! command -v npm >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
  say "Node.js 20+ with npm not found: the stats dashboard gets no charts (tests/integration/test_dashboard.py fails)"
else
  if [[ ! -f "$stamp" ]]; then
    say "installing the dashboard's npm packages (npm ci in tools/dashboard)"
    (cd "$dashboard" && npm ci --ignore-scripts --no-audit --no-fund) >"$LOGS/npm-dashboard.log" 2>&1 \
      || die "npm ci failed in tools/dashboard; see $LOGS/npm-dashboard.log"
    touch "$stamp"
  fi
  node "$dashboard/vendor.cjs" "$ROOT/services/stats/src/xinfang_stats/static/vendor" >>"$LOGS/npm-dashboard.log" 2>&1 \
    || die "could not copy the dashboard's vendor files; see $LOGS/npm-dashboard.log"
fi

# kubeconform, which make test runs over the production manifests (deploy/production): built from the Go module
# proxy into .local/bin, once per version (deploy/local/kubeconform.sh).
bash "$ROOT/deploy/local/kubeconform.sh"
