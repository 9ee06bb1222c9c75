#!/usr/bin/env bash
# Re-vendor the front-end libraries pinned in package.json into static/vendor/.
# The UI must work with no internet, so nothing is loaded from a CDN: the files are committed.
# After changing a version in package.json: run this script, update static/vendor/README.md,
# run the admin tests (browser ones included) and commit package.json, package-lock.json and
# static/vendor/ together.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ -f package-lock.json ]]; then
    npm ci --ignore-scripts --no-audit --no-fund
else
    npm install --ignore-scripts --no-audit --no-fund
fi

version_of() {
    node -p "require('./node_modules/$1/package.json').version"
}

# OpenLayers: the full classic build (global `ol`), which django.contrib.gis's OLMapWidget.js
# expects. dist/ol.js already bundles OpenLayers' own npm dependencies.
ol_dir=static/vendor/ol
rm -rf "$ol_dir"
mkdir -p "$ol_dir"
# The trailing sourceMappingURL comment names ol.js.map (5 MB), which is not vendored; left in,
# it makes ManifestStaticFilesStorage's collectstatic fail on the missing file.
sed '/^\/\/# sourceMappingURL=/d' node_modules/ol/dist/ol.js > "$ol_dir/ol.js"
cp node_modules/ol/ol.css "$ol_dir/ol.css"
cp node_modules/ol/LICENSE.md "$ol_dir/LICENSE.md"
version_of ol > "$ol_dir/VERSION"

echo "Vendored ol $(cat "$ol_dir/VERSION") into $ol_dir"
