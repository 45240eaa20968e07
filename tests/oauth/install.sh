#!/bin/sh
# The tests' authorization server (oidc-provider, from npm) into a cache folder
# outside the repository. Without npm the OAuth2 tests say so and skip (in CI,
# where CI=true, they fail instead).
set -e
want=9.13.3
dir="${MIKOTUI_TEST_CACHE:-$HOME/.cache/mikotui-test}"
if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: the OAuth2 tests will be skipped" >&2
    exit 0
fi
if grep -qs "\"version\": \"$want\"" "$dir/node_modules/oidc-provider/package.json"; then
    exit 0
fi
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || echo '{"private": true}' > package.json
npm install --no-audit --no-fund --silent "oidc-provider@$want"
