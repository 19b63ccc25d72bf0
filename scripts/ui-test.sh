#!/usr/bin/env bash
# The key-management page (/admin/ui/) in a real browser: headless chromium,
# driven by playwright-core (scripts/ui-test/test.mjs), against a freshly
# started quickstart. Signs in with the admin key it prints, creates a key
# (shown once, then gone from the page), rotates, revokes with a
# confirmation, pages through the list, and fails on any CSP violation,
# script error or request that leaves 127.0.0.1. Writes the README's
# screenshot, docs/images/admin-ui.png (UI_SCREENSHOT= to skip, or a path).
#
# Needs node (with npm) and chromium (Debian's `chromium`, or CHROMIUM=…).
# playwright-core is installed with `npm ci` into scripts/ui-test/node_modules
# (git-ignored) when missing. Without node or chromium the script says so
# and skips, except under CI=true, where it fails.
#
# The quickstart runs on its own port (KEYGATE_UI_TEST_PORT, default 3918)
# in a temporary directory, so its keygate.db is fresh; it is stopped when
# the script ends.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${KEYGATE_UI_TEST_PORT:-3918}"
budget="${UI_TEST_TIMEOUT:-120}"

skip() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "ui-test.sh: $1; CI=true, so this fails" >&2
        exit 1
    fi
    echo "ui-test.sh: skipped: $1" >&2
    exit 0
}

chromium="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
[[ -n "$chromium" && -x "$chromium" ]] || skip "chromium is not installed (apt-get install chromium)"
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
# playwright-core 1.65 needs node 20 or later (Debian 12's own nodejs is 18).
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[[ "$node_major" -ge 20 ]] || skip "node $node_major is too old for playwright-core (needs 20 or later)"

cd "$root/scripts/ui-test"
if ! node -e 'import("playwright-core")' >/dev/null 2>&1; then
    npm ci --no-audit --no-fund --loglevel=error
fi

cd "$root"
cargo build --quiet -p keygate-quickstart
target="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
quickstart="$target/debug/quickstart"

work="$(mktemp -d)"
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A fresh keygate.db in an empty directory; the quickstart prints its keys
# on a first run.
(cd "$work" && KEYGATE_ADDR="127.0.0.1:$port" KEYGATE_DATABASE_URL= RUST_LOG=warn \
    exec "$quickstart" >"$work/stdout.log" 2>"$work/stderr.log") &
pid=$!
admin_key=""
for _ in $(seq 300); do
    admin_key="$(sed -n 's/^KEYGATE_ADMIN_KEY=//p' "$work/stdout.log")"
    [[ -n "$admin_key" ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "ui-test.sh: the quickstart stopped:" >&2
        cat "$work/stderr.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$admin_key" ]]; then
    echo "ui-test.sh: the quickstart printed no admin key" >&2
    exit 1
fi

screenshot="${UI_SCREENSHOT-$root/docs/images/admin-ui.png}"
if [[ -n "$screenshot" ]]; then mkdir -p "$(dirname "$screenshot")"; fi

status=0
UI_BASE="http://127.0.0.1:$port" UI_ADMIN_KEY="$admin_key" UI_CHROMIUM="$chromium" \
    UI_SCREENSHOT="$screenshot" HOME="$work" \
    timeout "$budget" node "$root/scripts/ui-test/test.mjs" || status=$?
if [[ $status -ne 0 ]]; then
    echo "ui-test.sh: the browser test failed (exit $status); the quickstart's log:" >&2
    tail -n 20 "$work/stderr.log" >&2 || true
fi
exit "$status"
