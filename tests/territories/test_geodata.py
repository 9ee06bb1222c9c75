"""territories.geodata: TopoJSON decoding, adjacency, ZIP Voronoi cells and display simplification,
on hand-made topologies and on the shipped us-atlas file. No database."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, box

from territories import geodata

DATA = Path(__file__).resolve().parents[2] / "data" / "geo"


def quantized(points: list[tuple[int, int]]) -> list[list[int]]:
    """Delta-encode absolute quantized positions, as TopoJSON stores them."""
    out, previous = [], (0, 0)
    for x, y in points:
        out.append([x - previous[0], y - previous[1]])
        previous = (x, y)
    return out


def two_squares() -> dict:
    """Squares A = [10, 11] × [20, 21] and B = [11, 12] × [20, 21] (scale 0.5), sharing arc 0; B walks
    it backwards (~0)."""
    return {
        "type": "Topology",
        "transform": {"scale": [0.5, 0.5], "translate": [10, 20]},
        "objects": {
            "units": {
                "type": "GeometryCollection",
                "geometries": [
                    {"type": "Polygon", "id": "A", "properties": {"name": "Left"}, "arcs": [[0, 1]]},
                    {"type": "Polygon", "id": "B", "properties": {"name": "Right"}, "arcs": [[2, ~0]]},
                ],
            }
        },
        "arcs": [
            quantized([(2, 0), (2, 2)]),
            quantized([(2, 2), (0, 2), (0, 0), (2, 0)]),
            quantized([(2, 0), (4, 0), (4, 2), (2, 2)]),
        ],
    }


def holey_multipolygon() -> dict:
    """Unquantized: C = ([0, 4]² minus the hole [1, 3]²) plus the island [5, 6] × [0, 1]; D touches C
    only at the corner (4, 4)."""
    return {
        "type": "Topology",
        "objects": {
            "units": {
                "type": "GeometryCollection",
                "geometries": [
                    {"type": "MultiPolygon", "id": "C", "arcs": [[[0], [1]], [[2]]]},
                    # Nested collections are flattened.
                    {
                        "type": "GeometryCollection",
                        "geometries": [{"type": "Polygon", "id": "D", "arcs": [[3]]}],
                    },
                ],
            }
        },
        "arcs": [
            [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]],
            [[1, 1], [1, 3], [3, 3], [3, 1], [1, 1]],
            [[5, 0], [6, 0], [6, 1], [5, 1], [5, 0]],
            [[4, 4], [5, 4], [5, 5], [4, 5], [4, 4]],
        ],
    }


class TestDecode:
    def test_quantized_squares_share_an_arc(self):
        features = {f.id: f for f in geodata.topology_features(two_squares(), "units")}
        left, right = features["A"], features["B"]
        assert left.name == "Left" and right.name == "Right"
        assert isinstance(left.geometry, MultiPolygon)
        assert left.geometry.bounds == (10.0, 20.0, 11.0, 21.0)
        assert right.geometry.bounds == (11.0, 20.0, 12.0, 21.0)
        assert left.geometry.area == pytest.approx(1.0)
        assert right.geometry.area == pytest.approx(1.0)
        assert right.geometry.is_valid
        assert left.arcs == {0, 1} and right.arcs == {0, 2}

    def test_reversed_arc_is_walked_backwards(self):
        topology = two_squares()
        arcs = geodata.decode_arcs(topology)
        right = geodata.topology_features(topology, "units", arcs)[1]
        ring = np.asarray(right.geometry.geoms[0].exterior.coords)
        # Arc 2 ends at (11, 21); ~0 continues from there down to (11, 20), closing the ring.
        assert ring[-2].tolist() == [11.0, 21.0]
        assert ring[-1].tolist() == [11.0, 20.0]
        assert len(ring) == 5

    def test_multipolygon_with_hole(self):
        features = {f.id: f for f in geodata.topology_features(holey_multipolygon(), "units")}
        shape = features["C"].geometry
        assert len(shape.geoms) == 2
        assert shape.area == pytest.approx(16 - 4 + 1)
        assert not shape.contains(Point(2, 2))
        assert shape.contains(Point(0.5, 0.5)) and shape.contains(Point(5.5, 0.5))

    def test_adjacency_needs_a_shared_arc(self):
        assert geodata.arc_adjacency(geodata.topology_features(two_squares(), "units")) == [("A", "B")]
        # C and D meet at one corner only: not neighbours.
        assert geodata.arc_adjacency(geodata.topology_features(holey_multipolygon(), "units")) == []

    def test_errors_name_the_feature(self):
        topology = two_squares()
        topology["objects"]["units"]["geometries"][1]["arcs"] = [[2, 7]]
        with pytest.raises(geodata.TopologyError, match="'B'.*arc index 7"):
            geodata.topology_features(topology, "units")
        topology["objects"]["units"]["geometries"][1] = {"type": "Point", "id": "P", "coordinates": [0, 0]}
        with pytest.raises(geodata.TopologyError, match="'P'.*Point"):
            geodata.topology_features(topology, "units")
        with pytest.raises(geodata.TopologyError, match="no object 'nope'"):
            geodata.topology_features(topology, "nope")

    def test_collapsed_ring_gives_an_empty_feature_not_an_error(self):
        line = {"type": "Polygon", "id": "E", "arcs": [[0, 1]]}  # there and back again
        topology = {
            "type": "Topology",
            "objects": {"u": {"type": "GeometryCollection", "geometries": [line]}},
            "arcs": [[[0, 0], [1, 1]], [[1, 1], [0, 0]]],
        }
        (feature,) = geodata.topology_features(topology, "u")
        assert feature.geometry.is_empty
        assert feature.degenerate_rings == 1

    def test_ring_one_step_short_is_closed(self):
        topology = two_squares()
        topology["arcs"][1] = quantized([(2, 2), (0, 2), (0, 0), (2, 1)])  # ends one step above (2, 0)
        left = geodata.topology_features(topology, "units")[0]
        assert left.geometry.is_valid
        # (10, 20) → (11, 20.5) → (11, 20): the short ring loses that triangle and nothing else.
        assert left.geometry.area == pytest.approx(1.0 - 0.25)


class TestVoronoi:
    def clip(self):
        return {"A": box(0, 0, 2, 2), "B": box(2, 0, 4, 2)}

    def test_cells_tile_their_polygon_and_an_empty_polygon_is_one_cell(self):
        points = np.array([[0.5, 0.5], [1.5, 0.5], [1.0, 1.5]])
        result = geodata.zip_voronoi_cells(points, ["00003", "00001", "00002"], self.clip())
        assert result.unplaced == {}
        by_code = {c.code: c for c in result.cells}
        assert set(by_code) == {"00001", "00002", "00003", "county-B"}
        assert by_code["county-B"].members == () and by_code["county-B"].geometry.equals(box(2, 0, 4, 2))
        in_a = [c for c in result.cells if c.parent == "A"]
        assert sum(c.geometry.area for c in in_a) == pytest.approx(4.0)
        for cell in in_a:
            assert isinstance(cell.geometry, MultiPolygon)
            assert box(0, 0, 2, 2).buffer(1e-9).contains(cell.geometry)
        # Each point lies in its own cell.
        for code, xy in zip(["00003", "00001", "00002"], points, strict=True):
            assert by_code[code].geometry.contains(Point(xy))
        union = shapely.union_all([c.geometry for c in in_a])
        assert union.symmetric_difference(box(0, 0, 2, 2)).area < 1e-9

    def test_points_at_one_location_share_a_cell(self):
        points = np.array([[0.5, 0.5], [0.5, 0.5], [1.5, 1.5]])
        result = geodata.zip_voronoi_cells(points, ["00009", "00004", "00005"], {"A": box(0, 0, 2, 2)})
        shared = next(c for c in result.cells if "00009" in c.members)
        assert shared.code == "00004" and shared.members == ("00004", "00009")
        assert len(result.cells) == 2

    def test_points_outside_are_reported_or_snapped(self):
        points = np.array([[0.5, 0.5], [2.05, 0.5], [9.0, 9.0]])
        clip = {"A": box(0, 0, 2, 2)}
        far = geodata.zip_voronoi_cells(points, ["1", "2", "3"], clip, max_distance=0.0)
        assert set(far.unplaced) == {"2", "3"}
        near = geodata.zip_voronoi_cells(points, ["1", "2", "3"], clip, max_distance=0.1)
        assert set(near.unplaced) == {"3"}
        assert {c.code for c in near.cells} == {"1", "2"}

    def test_bad_input_is_refused(self):
        with pytest.raises(ValueError, match="2 points but 1 ids"):
            geodata.zip_voronoi_cells(np.zeros((2, 2)), ["1"], self.clip())
        with pytest.raises(ValueError, match="unique"):
            geodata.zip_voronoi_cells(np.zeros((2, 2)), ["1", "1"], self.clip())
        with pytest.raises(ValueError, match="point 2 has no finite"):
            geodata.zip_voronoi_cells(np.array([[0.5, 0.5], [np.nan, 1]]), ["1", "2"], self.clip())
        with pytest.raises(ValueError, match="parent 'Z'"):
            geodata.zip_voronoi_cells(np.array([[0.5, 0.5]]), ["1"], self.clip(), parents=["Z"])

    def test_assign_points_prefers_the_lower_index_on_a_shared_edge(self):
        index = geodata.assign_points(
            np.array([[2.0, 1.0], [3, 1], [7, 7]]), [box(0, 0, 2, 2), box(2, 0, 4, 2)]
        )
        assert index.tolist() == [0, 1, -1]


class TestPolygonAdjacency:
    def test_line_contact_counts_point_contact_does_not(self):
        geoms = [box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 1, 3, 2), box(5, 5, 6, 6)]
        pairs = geodata.polygon_adjacency(geoms, ["a", "b", "c", "d"])
        assert pairs == [("a", "b")]  # b and c meet at (2, 1) only

    def test_nearly_coincident_edges_count(self):
        # The same edge computed twice with floating-point noise, as clipping leaves it.
        geoms = [box(0, 0, 1, 1), box(1 + 1e-12, 0, 2, 1)]
        assert geodata.polygon_adjacency(geoms, ["a", "b"]) == [("a", "b")]

    def test_only_skips_pairs_of_unflagged_polygons(self):
        geoms = [box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)]
        assert geodata.polygon_adjacency(geoms, ["a", "b", "c"], only=[True, False, False]) == [("a", "b")]


class TestSimplify:
    def test_result_is_a_valid_nonempty_multipolygon_with_fewer_vertices(self):
        circle = Point(0, 0).buffer(1.0, quad_segs=256)
        simple = geodata.simplify_for_display(circle, 0.01)
        assert isinstance(simple, MultiPolygon) and simple.is_valid and not simple.is_empty
        assert shapely.get_num_coordinates(simple) < shapely.get_num_coordinates(circle) / 4
        assert simple.area == pytest.approx(circle.area, rel=0.01)

    def test_small_units_keep_their_shape(self):
        tiny = Point(0, 0).buffer(0.01, quad_segs=16)  # ~2 km across, below the 0.01° tolerance
        simple = geodata.simplify_for_display(tiny, 0.01)
        assert shapely.get_num_coordinates(simple) > 8
        assert simple.area == pytest.approx(tiny.area, rel=0.1)


@pytest.fixture(scope="module")
def us():
    topology = geodata.read_topojson(DATA / "us-atlas-counties-10m.json.gz")
    arcs = geodata.decode_arcs(topology)
    counties = geodata.topology_features(topology, "counties", arcs)
    states = geodata.topology_features(topology, "states", arcs)
    return {
        "counties": {f.id: f for f in counties},
        "states": {f.id: f for f in states},
        "county_pairs": set(geodata.arc_adjacency(counties)),
    }


ISLAND_COUNTIES = {
    "02016",  # Aleutians West
    "15001", "15003", "15007",  # Hawaii, Honolulu, Kauai
    "25019",  # Nantucket
    "53055",  # San Juan, WA
    "60020",  # Manu'a
    "66010",  # Guam
    "69085", "69100", "69110", "69120",  # Northern Mariana Islands
    "72049", "72147",  # Culebra, Vieques
    "78010",  # St. Croix
}  # fmt: skip


class TestRealFile:
    def test_counts_and_ids(self, us):
        assert len(us["counties"]) == 3231
        assert len(us["states"]) == 56
        assert set(us["states"]) == set(geodata.STATE_ABBR_BY_FIPS)
        assert all(code[:2] in us["states"] for code in us["counties"])
        assert us["counties"]["06037"].name == "Los Angeles"

    def test_geometries_are_valid_and_only_falls_church_is_empty(self, us):
        empty = [code for code, f in us["counties"].items() if f.geometry.is_empty]
        assert empty == ["51610"]
        assert all(f.geometry.is_valid for f in us["counties"].values())
        assert all(f.geometry.is_valid and not f.geometry.is_empty for f in us["states"].values())

    def test_downtown_los_angeles(self, us):
        downtown = Point(-118.24, 34.05)
        holders = [code for code, f in us["counties"].items() if f.geometry.contains(downtown)]
        assert holders == ["06037"]
        assert us["states"]["06"].geometry.contains(downtown)

    def test_adjacency(self, us):
        pairs = us["county_pairs"]
        assert ("06037", "06059") in pairs  # Los Angeles – Orange
        assert ("06037", "06111") in pairs  # Los Angeles – Ventura
        assert not any("36061" in pair for pair in pairs if "06037" in pair)
        # Four Corners: Apache, AZ – Montezuma, CO and San Juan, NM – San Juan, UT meet at a point only.
        assert ("04001", "08083") not in pairs and ("35045", "49037") not in pairs
        assert ("04001", "49037") in pairs
        neighbours = {code: 0 for code in us["counties"]}
        for a, b in pairs:
            neighbours[a] += 1
            neighbours[b] += 1
        assert {code for code, n in neighbours.items() if n == 0} == ISLAND_COUNTIES

    def test_states_are_the_union_of_their_counties(self, us):
        for fips in ("06", "44", "48"):
            counties = [f.geometry for code, f in us["counties"].items() if code[:2] == fips]
            assert sum(g.area for g in counties) == pytest.approx(us["states"][fips].geometry.area, rel=1e-3)

    def test_zip_cells_tile_rhode_island(self, us):
        with gzip.open(DATA / "zip_centroids.csv.gz", "rt") as handle:
            rows = [r for r in csv.DictReader(handle) if r["state"] == "RI" and r["type"] == "STANDARD"]
        assert len(rows) > 50
        clip = {code: f.geometry for code, f in us["counties"].items() if code[:2] == "44"}
        points = np.array([(float(r["lon"]), float(r["lat"])) for r in rows])
        result = geodata.zip_voronoi_cells(points, [r["zip"] for r in rows], clip)
        placed = {m for c in result.cells for m in c.members}
        assert placed | set(result.unplaced) == {r["zip"] for r in rows}
        for code, county in clip.items():
            cells = [c.geometry for c in result.cells if c.parent == code]
            assert sum(g.area for g in cells) == pytest.approx(county.area, rel=1e-9)
            assert all(county.buffer(1e-9).contains(g) for g in cells)
        pairs = geodata.polygon_adjacency([c.geometry for c in result.cells], [c.code for c in result.cells])
        linked = {code for pair in pairs for code in pair}
        mainland = [c.code for c in result.cells if c.parent != "44005"]  # Newport has island ZIPs
        assert len(linked & set(mainland)) > 0.9 * len(mainland)
        assert ("02903", "02906") in pairs  # downtown Providence and the East Side
