"""Fixed-seed instances for bench/optimizer.py (issue 3 §4–5).

Accounts are clustered like real cities: cities drawn in proportion to population from
data/demo/us_cities.csv.gz, jittered by a spread that grows with the city, with lognormal revenue,
workload hours loosely tied to revenue, and an account count of 1. Contiguous instances are real
polygons: US counties from the us-atlas TopoJSON (adjacency from shared arcs) and ZIP-like Voronoi
cells of ZIP centroids clipped to counties (adjacency from shared boundaries), each carrying the
summed metrics of the synthetic accounts inside it.

Everything is a pure function of its arguments and seed. Instances are saved to / loaded from .npz
so that each measured solver runs in a fresh process on exactly the same data.
"""

from __future__ import annotations

import csv
import gzip
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CITIES = ROOT / "data" / "demo" / "us_cities.csv.gz"
COUNTIES = ROOT / "data" / "geo" / "us-atlas-counties-10m.json.gz"
ZIPS = ROOT / "data" / "geo" / "zip_centroids.csv.gz"

METRICS = ("revenue", "workload_hours", "accounts")
EARTH_RADIUS_KM = 6371.0088
# The lower 48 and DC: Alaska, Hawaii and the territories would each be a territory of their own,
# which says nothing about the optimizer.
NOT_CONTINENTAL = {"AK", "HI", "PR", "VI", "GU", "AS", "MP"}
NOT_CONTINENTAL_FIPS = {"02", "15", "60", "66", "69", "72", "78"}


@dataclass
class Instance:
    """One benchmark instance. `current` is the plan before drift (rebalance) or before the new rep
    (add_rep); -1 marks a new account. `churned_revenue` is revenue that left with churned accounts."""

    name: str
    kind: str  # design | contiguous | small | rebalance | add_rep
    points: np.ndarray
    metrics: np.ndarray
    k: int
    tolerance: float
    adjacency: sp.csr_matrix | None = None
    current: np.ndarray | None = None
    note: str = ""

    @property
    def n(self) -> int:
        return int(self.points.shape[0])

    def save(self, path: Path) -> None:
        adj = self.adjacency.tocoo() if self.adjacency is not None else None
        np.savez(
            path,
            name=self.name,
            kind=self.kind,
            points=self.points,
            metrics=self.metrics,
            k=self.k,
            tolerance=self.tolerance,
            adj_row=adj.row if adj is not None else np.zeros(0, int),
            adj_col=adj.col if adj is not None else np.zeros(0, int),
            has_adj=adj is not None,
            current=self.current if self.current is not None else np.zeros(0, int),
            has_current=self.current is not None,
            note=self.note,
        )

    @classmethod
    def load(cls, path: Path) -> Instance:
        with np.load(path) as z:
            n = z["points"].shape[0]
            adjacency = None
            if bool(z["has_adj"]):
                ones = np.ones(len(z["adj_row"]))
                adjacency = sp.csr_matrix((ones, (z["adj_row"], z["adj_col"])), shape=(n, n))
            return cls(
                name=str(z["name"]),
                kind=str(z["kind"]),
                points=z["points"],
                metrics=z["metrics"],
                k=int(z["k"]),
                tolerance=float(z["tolerance"]),
                adjacency=adjacency,
                current=z["current"] if bool(z["has_current"]) else None,
                note=str(z["note"]),
            )


def project_km(points: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """Equirectangular projection to km around the points' mean latitude: within a few per cent of
    great-circle distance at territory scale, and it lets k-means work in plain Euclidean space."""
    lat0 = np.radians(points[:, 1].mean() if origin is None else origin[1])
    x = np.radians(points[:, 0]) * np.cos(lat0) * EARTH_RADIUS_KM
    y = np.radians(points[:, 1]) * EARTH_RADIUS_KM
    return np.column_stack([x, y])


def _cities(states: set[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lon, lat, pop, st = [], [], [], []
    with gzip.open(CITIES, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["state"] in NOT_CONTINENTAL or (states and row["state"] not in states):
                continue
            lon.append(float(row["lon"]))
            lat.append(float(row["lat"]))
            pop.append(max(float(row["population"] or 0), 1.0))
            st.append(row["state"])
    return np.column_stack([lon, lat]), np.asarray(pop), np.asarray(st)


def clustered_accounts(n: int, seed: int, states: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(points, metrics) of n synthetic accounts clustered around real cities."""
    rng = np.random.default_rng(seed)
    city_points, population, _ = _cities(states)
    city = rng.choice(len(population), size=n, p=population / population.sum())
    # A metro's accounts spread over ~2 km for a village and ~15 km for New York.
    spread_km = 2.0 + 0.004 * np.sqrt(population[city])
    offset_km = rng.normal(size=(n, 2)) * spread_km[:, None]
    lat = city_points[city, 1] + offset_km[:, 1] / 111.2
    lon = city_points[city, 0] + offset_km[:, 0] / (111.2 * np.cos(np.radians(city_points[city, 1])))
    revenue = rng.lognormal(mean=10.5, sigma=1.0, size=n)
    # Bigger accounts take more time, less than proportionally, plus a fixed cost per account.
    workload = 2.0 + 10.0 * (revenue / np.exp(10.5)) ** 0.4 * rng.lognormal(0.0, 0.3, size=n)
    metrics = np.column_stack([revenue, workload, np.ones(n)])
    return np.column_stack([lon, lat]), metrics


def design_instance(n: int, k: int, seed: int = 1, tolerance: float = 0.02) -> Instance:
    points, metrics = clustered_accounts(n, seed)
    return Instance(f"accounts {n // 1000}k K={k}", "design", points, metrics, k, tolerance)


def small_instance(n: int, k: int, seed: int = 7, tolerance: float = 0.05) -> Instance:
    points, metrics = clustered_accounts(n, seed)
    # The revenue tail of a few hundred lognormal accounts makes ±5% on every metric infeasible
    # for reasons unrelated to the optimizer; a milder spread keeps the MIP comparison meaningful.
    rng = np.random.default_rng(seed + 1)
    metrics[:, 0] = rng.lognormal(10.5, 0.5, size=n)
    return Instance(f"small {n} K={k}", "small", points, metrics, k, tolerance)


def drift_instance(base: Instance, current: np.ndarray, seed: int = 11) -> Instance:
    """The base instance after a period: 3% of accounts churned, 5% new (current = -1), revenue
    drifted per account (lognormal, sigma 0.2) and by region (the west grows ~20% against the east),
    enough to push territories past ±5% so that something must move."""
    rng = np.random.default_rng(seed)
    n = base.n
    keep = rng.random(n) >= 0.03
    new_points, new_metrics = clustered_accounts(int(round(0.05 * n)), seed + 1)
    points = np.vstack([base.points[keep], new_points])
    metrics = np.vstack([base.metrics[keep], new_metrics])
    z = (points[:, 0] - points[:, 0].mean()) / points[:, 0].std()
    metrics[:, 0] *= rng.lognormal(0.0, 0.2, size=len(points)) * np.exp(-0.1 * z)
    cur = np.concatenate([current[keep], np.full(len(new_points), -1)])
    return Instance(
        f"drift {n // 1000}k K={base.k}",
        "rebalance",
        points,
        metrics,
        base.k,
        0.05,
        current=cur,
        note="5% new, 3% churned, revenue drift",
    )


def add_rep_instance(base: Instance, current: np.ndarray) -> Instance:
    return replace(
        base,
        name=f"add rep {base.n // 1000}k K={base.k}→{base.k + 1}",
        kind="add_rep",
        k=base.k + 1,
        tolerance=0.05,
        current=current,
        note="one rep added",
    )


def _bridge_components(points: np.ndarray, pairs: np.ndarray) -> sp.csr_matrix:
    """Adjacency from index pairs, with every island (Nantucket, the San Juan Islands...) joined to
    its nearest mainland unit, as ferries do: otherwise no contiguous design could include it."""
    n = len(points)
    rows, cols = list(pairs[:, 0]), list(pairs[:, 1])
    xy = project_km(points)
    while True:
        graph = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        graph = ((graph + graph.T) > 0).astype(np.int8).tocsr()
        count, label = connected_components(graph, directed=False)
        if count == 1:
            return graph
        main = np.bincount(label).argmax()
        inside = np.flatnonzero(label == main)
        for comp in range(count):
            if comp == main:
                continue
            members = np.flatnonzero(label == comp)
            d = ((xy[members, None, :] - xy[None, inside, :]) ** 2).sum(axis=2)
            a, b = np.unravel_index(d.argmin(), d.shape)
            rows.append(members[a])
            cols.append(inside[b])


def _aggregate(polygons: list, seed: int, n_accounts: int, states: set[str] | None) -> np.ndarray:
    from territories.geodata import assign_points

    points, metrics = clustered_accounts(n_accounts, seed, states)
    where = assign_points(points, polygons, max_distance=0.2)
    inside = where >= 0
    out = np.zeros((len(polygons), metrics.shape[1]))
    np.add.at(out, where[inside], metrics[inside])
    return out


def _continental_counties(states: set[str] | None = None):
    from territories.geodata import STATE_ABBR_BY_FIPS, decode_arcs, read_topojson, topology_features

    topology = read_topojson(COUNTIES)
    arcs = decode_arcs(topology)
    features = [
        f
        for f in topology_features(topology, "counties", arcs)
        if f.id
        and f.id[:2] not in NOT_CONTINENTAL_FIPS
        and not f.geometry.is_empty
        and (states is None or STATE_ABBR_BY_FIPS.get(f.id[:2]) in states)
    ]
    return features


def county_instance(k: int = 50, seed: int = 3, n_accounts: int = 100_000) -> Instance:
    import shapely

    from territories.geodata import arc_adjacency

    features = _continental_counties()
    index = {f.id: i for i, f in enumerate(features)}
    pairs = np.asarray([(index[a], index[b]) for a, b in arc_adjacency(features)])
    geoms = [f.geometry for f in features]
    centres = shapely.get_coordinates(shapely.point_on_surface(np.asarray(geoms, dtype=object)))
    adjacency = _bridge_components(centres, pairs)
    metrics = _aggregate(geoms, seed, n_accounts, None)
    return Instance(
        f"US counties ({len(features)}) K={k}",
        "contiguous",
        centres,
        metrics,
        k,
        0.05,
        adjacency=adjacency,
        note=f"{n_accounts // 1000}k accounts summed per county",
    )


def zip_instance(
    states: tuple[str, ...] = ("NY", "PA", "NJ"), k: int = 50, seed: int = 5, n_accounts: int = 100_000
) -> Instance:
    """ZIP-like polygons: Voronoi cells of the STANDARD ZIP centroids of `states`, clipped to counties."""
    import shapely

    from territories.geodata import polygon_adjacency, zip_voronoi_cells

    counties = {f.id: f.geometry for f in _continental_counties(set(states))}
    ids, pts = [], []
    with gzip.open(ZIPS, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["state"] in states and row["type"] == "STANDARD":
                ids.append(row["zip"])
                pts.append((float(row["lon"]), float(row["lat"])))
    cells = zip_voronoi_cells(np.asarray(pts), ids, counties).cells
    geoms = [c.geometry for c in cells]
    codes = [c.code for c in cells]
    index = {c: i for i, c in enumerate(codes)}
    pairs = np.asarray([(index[a], index[b]) for a, b in polygon_adjacency(geoms, codes)])
    centres = shapely.get_coordinates(shapely.point_on_surface(np.asarray(geoms, dtype=object)))
    adjacency = _bridge_components(centres, pairs)
    metrics = _aggregate(geoms, seed, n_accounts, set(states))
    return Instance(
        f"ZIP cells {'+'.join(states)} ({len(cells)}) K={k}",
        "contiguous",
        centres,
        metrics,
        k,
        0.05,
        adjacency=adjacency,
        note=f"{n_accounts // 1000}k accounts summed per cell",
    )
