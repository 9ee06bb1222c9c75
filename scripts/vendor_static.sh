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

# strip_map SRC DEST: copy a script without its sourceMappingURL comment (maps are not vendored).
strip_map() { sed -E '/^\/[\/*]# sourceMappingURL=/d; s#//\# sourceMappingURL=[^ ]*$##' "$1" > "$2"; }

# MapLibre GL JS: the UMD build (global `maplibregl`) for the planner and the small page maps.
ml_dir=static/vendor/maplibre-gl
rm -rf "$ml_dir"
mkdir -p "$ml_dir"
strip_map node_modules/maplibre-gl/dist/maplibre-gl.js "$ml_dir/maplibre-gl.js"
cp node_modules/maplibre-gl/dist/maplibre-gl.css "$ml_dir/maplibre-gl.css"
cp node_modules/maplibre-gl/LICENSE.txt "$ml_dir/LICENSE.txt"
version_of maplibre-gl > "$ml_dir/VERSION"

# Chart.js: the UMD build (global `Chart`) for dashboards and the trade-off chart.
chart_dir=static/vendor/chart.js
rm -rf "$chart_dir"
mkdir -p "$chart_dir"
strip_map node_modules/chart.js/dist/chart.umd.min.js "$chart_dir/chart.umd.min.js"
cp node_modules/chart.js/LICENSE.md "$chart_dir/LICENSE.md"
version_of chart.js > "$chart_dir/VERSION"

# Swagger UI for /api/docs/, served from our static files so it works offline.
sw_dir=static/vendor/swagger-ui
rm -rf "$sw_dir"
mkdir -p "$sw_dir"
strip_map node_modules/swagger-ui-dist/swagger-ui-bundle.js "$sw_dir/swagger-ui-bundle.js"
strip_map node_modules/swagger-ui-dist/swagger-ui-standalone-preset.js "$sw_dir/swagger-ui-standalone-preset.js"
sed '/sourceMappingURL=/d' node_modules/swagger-ui-dist/swagger-ui.css > "$sw_dir/swagger-ui.css"
cp node_modules/swagger-ui-dist/favicon-32x32.png node_modules/swagger-ui-dist/LICENSE "$sw_dir/"
version_of swagger-ui-dist > "$sw_dir/VERSION"

for dir in "$ol_dir" "$ml_dir" "$chart_dir" "$sw_dir"; do
    echo "Vendored $(basename "$dir") $(cat "$dir/VERSION") into $dir"
done
