"""Pure geometry for geography units: TopoJSON decoding, adjacency, ZIP Voronoi cells, display
simplification. Imports nothing of Django, so it is testable (and reusable) without a database.

Coordinates are (lon, lat) degrees, SRID 4326 throughout.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

# FIPS state code → USPS abbreviation for every state-level unit in the Census/us-atlas files
# (50 states, DC and the five inhabited territories). The TopoJSON carries names, not abbreviations.
STATE_ABBR_BY_FIPS: dict[str, str] = {
    "01": "AL", "02": "AK", "04": "AZ", "05": "AR", "06": "CA", "08": "CO", "09": "CT", "10": "DE",
    "11": "DC", "12": "FL", "13": "GA", "15": "HI", "16": "ID", "17": "IL", "18": "IN", "19": "IA",
    "20": "KS", "21": "KY", "22": "LA", "23": "ME", "24": "MD", "25": "MA", "26": "MI", "27": "MN",
    "28": "MS", "29": "MO", "30": "MT", "31": "NE", "32": "NV", "33": "NH", "34": "NJ", "35": "NM",
    "36": "NY", "37": "NC", "38": "ND", "39": "OH", "40": "OK", "41": "OR", "42": "PA", "44": "RI",
    "45": "SC", "46": "SD", "47": "TN", "48": "TX", "49": "UT", "50": "VT", "51": "VA", "53": "WA",
    "54": "WV", "55": "WI", "56": "WY", "60": "AS", "66": "GU", "69": "MP", "72": "PR", "78": "VI",
}  # fmt: skip
STATE_FIPS_BY_ABBR: dict[str, str] = {abbr: fips for fips, abbr in STATE_ABBR_BY_FIPS.items()}

# A ZIP-level unit for a county that holds no ZIP centroid gets this prefix before the county FIPS,
# so its code can never collide with a real five-digit ZIP.
EMPTY_CELL_PREFIX = "county-"

# ~1 cm and ~1 m at the equator: two cells are neighbours when their boundaries run together for at
# least a metre within a centimetre; clipping the same county line from two sides leaves them that
# close, while cells meeting at a corner share far less than a metre.
ADJACENCY_TOLERANCE_DEG = 1e-7
ADJACENCY_MIN_SHARED_DEG = 1e-5

# Display geometries: ~1 km, but never more than a tenth of a unit's own size, so a 2 km-wide
# independent city still draws as a shape rather than a triangle.
DISPLAY_TOLERANCE_DEG = 0.01
DISPLAY_RELATIVE_TOLERANCE = 0.1


class TopologyError(ValueError):
    """The TopoJSON is malformed or uses something this decoder does not support."""


@dataclass(frozen=True)
class TopoFeature:
    """One decoded feature of a TopoJSON object: its id, name, other properties, geometry and the
    (absolute) indexes of the arcs it is built from."""

    id: str | None
    name: str | None
    geometry: MultiPolygon
    arcs: frozenset[int]
    properties: dict = field(default_factory=dict)
    degenerate_rings: int = 0


@dataclass(frozen=True)
class Cell:
    """A ZIP-level unit: the Voronoi cell of one centroid location clipped to its parent polygon.

    `members` are the ids of the points at that location (several ZIPs can share one centroid); the
    cell's `code` is the smallest of them. A parent without any point gives one cell with no members
    whose code is EMPTY_CELL_PREFIX + parent."""

    code: str
    parent: str
    geometry: MultiPolygon
    members: tuple[str, ...]


@dataclass
class VoronoiResult:
    """Cells tiling the clip polygons, plus every input point that seeded no cell and why."""

    cells: list[Cell]
    unplaced: dict[str, str]


def read_topojson(path: str | Path) -> dict:
    """Load a TopoJSON file, gzipped (``.gz``) or plain."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        topology = json.load(handle)
    if topology.get("type") != "Topology" or "arcs" not in topology or "objects" not in topology:
        raise TopologyError(f"{path} is not a TopoJSON Topology (needs type, objects and arcs).")
    return topology


def decode_arcs(topology: Mapping) -> list[np.ndarray]:
    """Absolute (lon, lat) coordinates of every arc, undoing quantization and delta encoding."""
    transform = topology.get("transform")
    if transform:
        scale = np.asarray(transform["scale"], dtype=float)
        translate = np.asarray(transform["translate"], dtype=float)
    decoded = []
    for index, arc in enumerate(topology["arcs"]):
        try:
            positions = np.asarray([position[:2] for position in arc], dtype=float)
        except (TypeError, ValueError) as exc:
            raise TopologyError(f"arc {index} is not a list of positions: {exc}") from exc
        if positions.ndim != 2 or positions.shape[0] < 2 or positions.shape[1] != 2:
            raise TopologyError(f"arc {index} needs at least two [x, y] positions.")
        if transform:
            # Quantized arcs store the first position absolutely and every later one as a delta.
            positions = np.cumsum(positions, axis=0) * scale + translate
        decoded.append(positions)
    return decoded


def topology_features(
    topology: Mapping, object_name: str, arcs: list[np.ndarray] | None = None
) -> list[TopoFeature]:
    """Decode the Polygon/MultiPolygon features of one object (nested GeometryCollections flattened).

    A feature that quantization squashed to nothing (at 1:10M, Falls Church, VA is a line) comes back
    with an empty geometry, for the caller to report; its arcs still count for adjacency.

    Pass `arcs` from `decode_arcs` to decode several objects of one topology without redoing it."""
    try:
        root = topology["objects"][object_name]
    except KeyError:
        raise TopologyError(f"the topology has no object {object_name!r}.") from None
    if arcs is None:
        arcs = decode_arcs(topology)
    features = []
    for geometry in _flatten(root):
        feature_id = geometry.get("id")
        properties = dict(geometry.get("properties") or {})
        label = f"{object_name} feature {feature_id!r}"
        kind = geometry.get("type")
        if kind == "Polygon":
            polygons = [geometry["arcs"]]
        elif kind == "MultiPolygon":
            polygons = geometry["arcs"]
        else:
            raise TopologyError(f"{label}: geometry type {kind!r} is not supported (Polygon, MultiPolygon).")
        used: set[int] = set()
        degenerate = [0]
        shapes = [_polygon(rings, arcs, used, degenerate, label) for rings in polygons]
        features.append(
            TopoFeature(
                id=None if feature_id is None else str(feature_id),
                name=properties.get("name"),
                geometry=_valid_multipolygon(MultiPolygon([s for s in shapes if s is not None])),
                arcs=frozenset(used),
                properties=properties,
                degenerate_rings=degenerate[0],
            )
        )
    return features


def _flatten(geometry: Mapping):
    if geometry.get("type") == "GeometryCollection":
        for child in geometry.get("geometries", []):
            yield from _flatten(child)
    else:
        yield geometry


def _polygon(
    rings: Sequence[Sequence[int]], arcs: list[np.ndarray], used: set[int], degenerate: list[int], label: str
) -> Polygon | None:
    if not rings:
        raise TopologyError(f"{label}: a polygon without rings.")
    coordinates = [_ring(ring, arcs, used, label) for ring in rings]
    # Quantization collapses the tiniest islands and holes to A-B-A rings; they have no area to keep,
    # so they are counted (TopoFeature.degenerate_rings) rather than built.
    kept = [ring for ring in coordinates if len(ring) >= 4]
    degenerate[0] += len(coordinates) - len(kept)
    if len(coordinates[0]) < 4:
        degenerate[0] += len(kept)
        return None
    # TopoJSON follows GeoJSON: the first ring is the exterior, the others are holes.
    return Polygon(kept[0], kept[1:])


def _ring(ring: Sequence[int], arcs: list[np.ndarray], used: set[int], label: str) -> np.ndarray:
    parts = []
    for position, index in enumerate(ring):
        absolute = index if index >= 0 else ~index  # ~i means arc i walked backwards
        if absolute >= len(arcs):
            raise TopologyError(f"{label}: arc index {index} is out of range ({len(arcs)} arcs).")
        used.add(absolute)
        coords = arcs[absolute] if index >= 0 else arcs[absolute][::-1]
        # Consecutive arcs share their joining point; keep it once.
        parts.append(coords if position == 0 else coords[1:])
    coords = np.concatenate(parts)
    if not np.array_equal(coords[0], coords[-1]):
        # us-atlas has a few state rings whose last arc ends one quantization step short of the
        # first (Illinois); renderers close rings implicitly, so close it the same way.
        coords = np.vstack([coords, coords[:1]])
    return coords


def as_multipolygon(geometry: BaseGeometry) -> MultiPolygon:
    """The polygonal part of `geometry` as a MultiPolygon (empty if it has none)."""
    if isinstance(geometry, MultiPolygon):
        return geometry
    if isinstance(geometry, Polygon):
        return MultiPolygon([geometry]) if not geometry.is_empty else MultiPolygon()
    parts = [
        part
        for part in shapely.get_parts(geometry)
        if isinstance(part, Polygon | MultiPolygon) and not part.is_empty
    ]
    polygons: list[Polygon] = []
    for part in parts:
        polygons.extend(part.geoms if isinstance(part, MultiPolygon) else [part])
    return MultiPolygon(polygons)


def _valid_multipolygon(geometry: BaseGeometry) -> MultiPolygon:
    if not geometry.is_valid:
        # Quantization can pinch a ring onto itself; make_valid keeps all of the area.
        geometry = shapely.make_valid(geometry)
    return as_multipolygon(geometry)


def arc_adjacency(features: Sequence[TopoFeature]) -> list[tuple[str, str]]:
    """Pairs (id_a, id_b), id_a < id_b, of features that share at least one arc, i.e. a stretch of
    boundary. Features meeting at a single point share no arc and are not neighbours."""
    users: dict[int, set[str]] = defaultdict(set)
    for feature in features:
        if feature.id is None:
            raise TopologyError("every feature needs an id to compute adjacency.")
        for arc in feature.arcs:
            users[arc].add(feature.id)
    pairs: set[tuple[str, str]] = set()
    for ids in users.values():
        if len(ids) > 1:
            ordered = sorted(ids)
            pairs.update((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])
    return sorted(pairs)


def polygon_adjacency(
    geometries: Sequence[BaseGeometry],
    ids: Sequence[str],
    *,
    only: Sequence[bool] | None = None,
    tolerance: float = ADJACENCY_TOLERANCE_DEG,
    min_shared_length: float = ADJACENCY_MIN_SHARED_DEG,
) -> list[tuple[str, str]]:
    """Pairs (id_a, id_b), id_a < id_b, of polygons whose boundaries touch along a line (at least
    `min_shared_length` of boundary within `tolerance`), not just at a point.

    With `only`, pairs in which neither polygon is flagged are skipped: neighbours already stored
    can take part without recomputing their own adjacency."""
    geoms = np.asarray(geometries, dtype=object)
    if len(geoms) != len(ids):
        raise ValueError(f"{len(geoms)} geometries but {len(ids)} ids.")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique.")
    if len(geoms) == 0:
        return []
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="dwithin", distance=tolerance)
    keep = left < right
    if only is not None:
        flags = np.asarray(only, dtype=bool)
        keep &= flags[left] | flags[right]
    left, right = left[keep], right[keep]
    if left.size == 0:
        return []
    needed = np.unique(right)
    grown = np.empty(len(geoms), dtype=object)
    grown[needed] = shapely.buffer(geoms[needed], tolerance, quad_segs=2)
    shared = shapely.length(shapely.intersection(shapely.boundary(geoms[left]), grown[right]))
    id_array = np.asarray(ids, dtype=object)
    touching = shared >= min_shared_length
    pairs = {
        tuple(sorted((a, b)))
        for a, b in zip(id_array[left][touching], id_array[right][touching], strict=True)
    }
    return sorted(pairs)


def assign_points(
    points: np.ndarray, polygons: Sequence[BaseGeometry], *, max_distance: float = 0.0
) -> np.ndarray:
    """Index of the polygon holding each (lon, lat) point, -1 for none.

    A point on a shared boundary goes to the lower index; a point outside every polygon goes to the
    nearest one within `max_distance` degrees (coastal centroids against a generalized coastline)."""
    coords = np.asarray(points, dtype=float).reshape(-1, 2)
    result = np.full(len(coords), -1, dtype=np.int64)
    if len(coords) == 0 or len(polygons) == 0:
        return result
    tree = shapely.STRtree(np.asarray(polygons, dtype=object))
    pts = shapely.points(coords)
    hit_point, hit_polygon = tree.query(pts, predicate="intersects")
    order = np.lexsort((hit_polygon, hit_point))
    hit_point, hit_polygon = hit_point[order], hit_polygon[order]
    _, first = np.unique(hit_point, return_index=True)
    result[hit_point[first]] = hit_polygon[first]
    missing = np.flatnonzero(result < 0)
    if max_distance > 0 and missing.size:
        near_point, near_polygon = tree.query_nearest(
            pts[missing], max_distance=max_distance, all_matches=False
        )
        result[missing[near_point]] = near_polygon
    return result


def zip_voronoi_cells(
    points: np.ndarray,
    ids: Sequence[str],
    clip_polygons: Mapping[str, BaseGeometry],
    *,
    parents: Sequence[str | None] | None = None,
    max_distance: float = 0.1,
    on_progress: Callable[[int], object] | None = None,
) -> VoronoiResult:
    """Voronoi cells of ZIP centroids, each clipped to the polygon (county) that holds its centroid.

    `points` is an (n, 2) array of (lon, lat), `ids` the n ZIP codes, `clip_polygons` the county
    polygons by code. Each point belongs to the polygon holding it (`parents`, if given, says so
    instead; None = no parent). Points at one location share a cell. A polygon holding no point
    becomes one cell of its own, so the cells tile every clip polygon. Points without a parent, and
    points whose cell misses their polygon entirely, are reported in `unplaced`, never dropped
    silently. `on_progress(1)` is called after each clip polygon."""
    coords = np.asarray(points, dtype=float).reshape(-1, 2)
    ids = [str(i) for i in ids]
    if len(coords) != len(ids):
        raise ValueError(f"{len(coords)} points but {len(ids)} ids.")
    if len(set(ids)) != len(ids):
        raise ValueError("point ids must be unique.")
    bad = np.flatnonzero(~np.isfinite(coords).all(axis=1))
    if bad.size:
        raise ValueError(f"point {ids[bad[0]]} has no finite coordinates.")
    keys = sorted(clip_polygons)
    if parents is None:
        index = assign_points(coords, [clip_polygons[k] for k in keys], max_distance=max_distance)
        parents = [keys[i] if i >= 0 else None for i in index]
    elif len(parents) != len(ids):
        raise ValueError(f"{len(parents)} parents but {len(ids)} points.")

    unplaced: dict[str, str] = {}
    members_of: dict[str, list[int]] = defaultdict(list)
    for i, parent in enumerate(parents):
        if parent is None:
            unplaced[ids[i]] = "lies in no clip polygon"
        elif parent not in clip_polygons:
            raise ValueError(f"point {ids[i]}: parent {parent!r} is not among the clip polygons.")
        else:
            members_of[parent].append(i)

    cells: list[Cell] = []
    for key in keys:
        polygon = as_multipolygon(clip_polygons[key])
        if polygon.is_empty:
            raise ValueError(f"clip polygon {key!r} is empty.")
        chosen = members_of.get(key, [])
        if on_progress is not None:
            on_progress(1)
        if not chosen:
            cells.append(Cell(code=f"{EMPTY_CELL_PREFIX}{key}", parent=key, geometry=polygon, members=()))
            continue
        sites, inverse = np.unique(coords[chosen], axis=0, return_inverse=True)
        groups: list[list[str]] = [[] for _ in range(len(sites))]
        for position, site in enumerate(inverse.reshape(-1)):
            groups[site].append(ids[chosen[position]])
        if len(sites) == 1:
            pieces = [polygon]
        else:
            diagram = shapely.voronoi_polygons(shapely.multipoints(sites), extend_to=polygon, ordered=True)
            pieces = shapely.intersection(shapely.get_parts(diagram), polygon)
        for group, piece in zip(groups, pieces, strict=True):
            members = tuple(sorted(group))
            geometry = as_multipolygon(piece)
            if geometry.is_empty:
                for member in members:
                    unplaced[member] = f"its cell lies outside clip polygon {key}"
                continue
            cells.append(Cell(code=members[0], parent=key, geometry=geometry, members=members))
    return VoronoiResult(cells=cells, unplaced=unplaced)


def simplify_for_display(
    geometry: BaseGeometry,
    tolerance: float = DISPLAY_TOLERANCE_DEG,
    *,
    relative: float = DISPLAY_RELATIVE_TOLERANCE,
) -> MultiPolygon:
    """A lighter copy of `geometry` for drawing: a valid, non-empty MultiPolygon.

    The tolerance shrinks to `relative` × the square root of the unit's area for small units, and
    preserve_topology keeps every ring (islands included) from collapsing."""
    source = as_multipolygon(geometry)
    if source.is_empty:
        raise ValueError("cannot simplify an empty geometry.")
    effective = min(tolerance, relative * float(np.sqrt(source.area)))
    simplified = shapely.simplify(source, effective, preserve_topology=True)
    if not simplified.is_valid:
        simplified = shapely.make_valid(simplified)
    result = as_multipolygon(simplified)
    return result if not result.is_empty else source
