"""Deterministic, idempotent demo data: accounts placed by real US city populations, reps and their
managers, a starter plan (4 regions > 10 districts > 40 territories built from counties), fiscal
periods, two years of bookings and a handful of logins.

Everything comes from one seed, so two runs on the same geography produce the same rows. Rows are
found again by their DEMO- external ids (accounts, reps, bookings), by code (fiscal periods), by
username (logins) and by name (the starter plan); whatever exists is kept, only what is missing is
added. `reset=True` deletes the demo rows first and rebuilds them.
"""

from __future__ import annotations

import colorsys
import csv
import gzip
import time
from calendar import monthrange
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import shapely
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.gis.geos import Point
from django.db import connection, models, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone
from psycopg import sql as pgsql
from scipy.spatial import cKDTree
from tqdm import tqdm

from accounts.choices import AccountStatus, GeocodeQuality, Role, Segment
from accounts.models import Account, Rep, User
from quotas.choices import Component, PeriodKind
from quotas.models import Booking, FiscalPeriod, QuotaPlan
from territories.choices import (
    AssignmentRole,
    AssignmentSource,
    ChangeKind,
    MemberRole,
    PlanStatus,
    UnitLevel,
)
from territories.models import (
    AccountAssignment,
    Change,
    Plan,
    Territory,
    TerritoryMembership,
    UnitAssignment,
)
from territories.services import plan_materialize
from tessera_common.errors import ApplicationError

DEMO_PREFIX = "DEMO-"
DEMO_PASSWORD = "tessera-demo"  # published on purpose: these are demo logins, never production ones
DEFAULT_SEED = 42
DEFAULT_ACCOUNTS = 20_000
DEFAULT_TERRITORIES = 40
DEFAULT_CITIES_PATH = Path(settings.BASE_DIR) / "data" / "demo" / "us_cities.csv.gz"
STARTER_PLAN_NAME = "FY{year} Starter plan"
_STARTER_PLAN_RE = r"^FY[0-9]{4} Starter plan$"
DEMO_QUOTA_PLAN_NAME = "FY{year} demo quotas"
_DEMO_QUOTA_PLAN_RE = r"^FY[0-9]{4} demo quotas$"
# The demo's company target: last year's bookings per component grown by this much.
DEMO_QUOTA_GROWTH = Decimal("1.10")
# Activity and retention goals of every demo territory, kept beside its quota.
DEMO_GOALS = {
    "calls_per_week": Decimal("40"),
    "meetings_per_week": Decimal("8"),
    "retention_rate": Decimal("0.9"),
}

REGIONS = {"NE": "Northeast", "MW": "Midwest", "S": "South", "W": "West"}
REGION_SLUGS = {"NE": "northeast", "MW": "midwest", "S": "south", "W": "west"}

# Ten groups of neighbouring states, each near a tenth of the US population (so of demo potential,
# which follows city population). Census regions are kept whole; Alaska goes with the Northwest.
DISTRICTS: dict[str, tuple[str, str, str]] = {
    # code: (region, name, login slug)
    "NE-NY": ("NE", "New England & New York", "newengland"),
    "NE-MA": ("NE", "Mid-Atlantic", "midatlantic"),
    "MW-GL": ("MW", "Great Lakes", "greatlakes"),
    "MW-HL": ("MW", "Heartland", "heartland"),
    "S-CAP": ("S", "Capital & Carolinas", "capital"),
    "S-SE": ("S", "Southeast", "southeast"),
    "S-CS": ("S", "Central South", "centralsouth"),
    "S-TX": ("S", "Texas", "texas"),
    "W-PAC": ("W", "Pacific", "pacific"),
    "W-MTN": ("W", "Northwest & Mountain", "mountain"),
}

# The 50 states and DC by FIPS code: (abbreviation, district). Puerto Rico and the other territories
# are left out on purpose: demo accounts and the starter plan cover the states only.
STATES: dict[str, tuple[str, str]] = {
    "01": ("AL", "S-CS"), "02": ("AK", "W-MTN"), "04": ("AZ", "W-MTN"), "05": ("AR", "S-CS"),
    "06": ("CA", "W-PAC"), "08": ("CO", "W-MTN"), "09": ("CT", "NE-NY"), "10": ("DE", "S-CAP"),
    "11": ("DC", "S-CAP"), "12": ("FL", "S-SE"), "13": ("GA", "S-SE"), "15": ("HI", "W-PAC"),
    "16": ("ID", "W-MTN"), "17": ("IL", "MW-HL"), "18": ("IN", "MW-GL"), "19": ("IA", "MW-HL"),
    "20": ("KS", "MW-HL"), "21": ("KY", "S-CS"), "22": ("LA", "S-CS"), "23": ("ME", "NE-NY"),
    "24": ("MD", "S-CAP"), "25": ("MA", "NE-NY"), "26": ("MI", "MW-GL"), "27": ("MN", "MW-HL"),
    "28": ("MS", "S-CS"), "29": ("MO", "MW-HL"), "30": ("MT", "W-MTN"), "31": ("NE", "MW-HL"),
    "32": ("NV", "W-MTN"), "33": ("NH", "NE-NY"), "34": ("NJ", "NE-MA"), "35": ("NM", "W-MTN"),
    "36": ("NY", "NE-NY"), "37": ("NC", "S-CAP"), "38": ("ND", "MW-HL"), "39": ("OH", "MW-GL"),
    "40": ("OK", "S-CS"), "41": ("OR", "W-MTN"), "42": ("PA", "NE-MA"), "44": ("RI", "NE-NY"),
    "45": ("SC", "S-CAP"), "46": ("SD", "MW-HL"), "47": ("TN", "S-CS"), "48": ("TX", "S-TX"),
    "49": ("UT", "W-MTN"), "50": ("VT", "NE-NY"), "51": ("VA", "S-CAP"), "53": ("WA", "W-MTN"),
    "54": ("WV", "S-CAP"), "55": ("WI", "MW-GL"), "56": ("WY", "W-MTN"),
}  # fmt: skip
STATE_ABBRS = {abbr for abbr, _ in STATES.values()}

REGION_COLORS = {"NE": "#4C72B0", "MW": "#DD8452", "S": "#55A868", "W": "#C44E52"}
DISTRICT_COLORS = [
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD",
    "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF",
]  # fmt: skip

# Share of B2B accounts by industry (roughly the US mix of firms with more than a few employees) and
# how much each industry tends to spend per employee relative to the average.
INDUSTRIES: dict[str, tuple[float, float]] = {
    "Professional Services": (0.18, 1.0),
    "Retail": (0.14, 0.8),
    "Healthcare": (0.13, 1.1),
    "Manufacturing": (0.12, 1.0),
    "Technology": (0.10, 1.3),
    "Financial Services": (0.09, 1.3),
    "Education": (0.07, 0.7),
    "Transportation": (0.07, 0.9),
    "Government": (0.05, 0.8),
    "Energy": (0.05, 1.2),
}
INDUSTRY_NOUNS = {
    "Professional Services": ["Consulting", "Advisors", "Partners", "Legal", "Associates", "Engineering"],
    "Retail": ["Outfitters", "Market", "Stores", "Supply", "Home Goods", "Trading"],
    "Healthcare": ["Health", "Medical Group", "Clinics", "Care Partners", "Labs", "Pharmacy"],
    "Manufacturing": ["Industries", "Fabrication", "Machining", "Plastics", "Tooling", "Components"],
    "Technology": ["Software", "Systems", "Networks", "Data", "Labs", "Digital"],
    "Financial Services": ["Bank", "Capital", "Credit Union", "Insurance", "Wealth", "Financial"],
    "Education": ["Academy", "College", "Learning", "School District", "Institute", "Education"],
    "Transportation": ["Logistics", "Freight", "Transit", "Trucking", "Shipping", "Aviation"],
    "Government": ["County Services", "Water Authority", "Port Authority", "Housing Authority",
                   "Transit District", "Public Works"],
    "Energy": ["Energy", "Power", "Solar", "Utilities", "Oil & Gas", "Renewables"],
}  # fmt: skip
NAME_PREFIXES = [
    "Summit", "Blue Ridge", "Pioneer", "Harbor", "Granite", "Cedar", "Liberty", "Northstar", "Evergreen",
    "Keystone", "Meridian", "Riverside", "Lakeshore", "Ironwood", "Silver Creek", "Prairie", "Redwood",
    "Atlas", "Beacon", "Crescent", "Frontier", "Golden Gate", "Highland", "Juniper", "Magnolia", "Maple",
    "Oakridge", "Pinnacle", "Quarry", "Sequoia", "Sterling", "Tidewater", "Union", "Vanguard", "Westfield",
    "Willow", "Cobalt", "Copperline", "Falcon", "Horizon", "Lighthouse", "Mesa", "Orchard", "Patriot",
    "Sagebrush", "Timberline", "Bluewater", "Canyon", "Eastgate", "Fairview",
]  # fmt: skip
NAME_SUFFIXES = ["Inc.", "LLC", "Co.", "Group", "Corp.", ""]

# Segment mix and, per segment: median employees and their clip range, yearly workload hours,
# status weights (customer, prospect, churned), the expected number of upsells a year and contracts.
SEGMENTS = [Segment.SMB, Segment.MID_MARKET, Segment.ENTERPRISE]
SEGMENT_WEIGHTS = [0.70, 0.22, 0.08]
SEGMENT_EMPLOYEES = [(25, 1, 199), (450, 200, 1999), (5000, 2000, 200_000)]
# Yearly selling hours per account: with ~500 accounts a territory (20,000 over 40), a full-time rep
# carries about 1,450 hours, near the 1,600 a year of TESSERA_HOURS_PER_FTE, so the capacity warning
# picks out the overloaded territories and part-time reps rather than everyone.
SEGMENT_HOURS = [1.0, 4.0, 15.0]
SEGMENT_STATUS = [(0.30, 0.60, 0.10), (0.40, 0.50, 0.10), (0.55, 0.38, 0.07)]
SEGMENT_UPSELLS = [0.5, 1.5, 4.0]
SEGMENT_CONTRACTS = [1, 2, 4]  # renewing contracts (product lines) a customer of the segment holds
STATUSES = [AccountStatus.CUSTOMER, AccountStatus.PROSPECT, AccountStatus.CHURNED]

LEAD_SOURCES = {
    "Inbound web": 0.24, "Outbound": 0.22, "Partner referral": 0.14, "Trade show": 0.10,
    "Customer referral": 0.10, "Webinar": 0.08, "Paid search": 0.08, "Event": 0.04,
}  # fmt: skip

# Booking seasonality: quarter-end months are heavier, and Q4 heaviest of all (budget flush).
MONTH_WEIGHTS = np.array([0.055, 0.065, 0.095, 0.065, 0.075, 0.100, 0.060, 0.065, 0.100, 0.080, 0.095, 0.145])

FIRST_NAMES = [
    "Maya", "Jordan", "Priya", "Marcus", "Elena", "Daniel", "Aisha", "Kevin", "Sofia", "Tyler", "Grace",
    "Andre", "Hannah", "Luis", "Megan", "Omar", "Rachel", "Ethan", "Keiko", "Brandon", "Natalie", "Samuel",
    "Chloe", "Victor", "Lauren", "Isaac", "Fatima", "Connor", "Diana", "Wesley", "Julia", "Trevor", "Monica",
    "Caleb", "Nadia", "Derek", "Olivia", "Ramon", "Tessa", "Gavin",
]  # fmt: skip
LAST_NAMES = [
    "Chen", "Patel", "Garcia", "Johnson", "Okafor", "Nguyen", "Rivera", "Kim", "Schmidt", "Williams",
    "Haddad", "Brooks", "Morales", "Sullivan", "Tanaka", "Foster", "Reyes", "Novak", "Bennett", "Hughes",
    "Ortiz", "Larsen", "Coleman", "Dubois", "Fischer", "Grant", "Ibrahim", "Jensen", "Kowalski", "Lopez",
    "Mendez", "Price", "Quinn", "Rossi", "Shah", "Turner", "Vargas", "Walsh", "Young", "Zimmerman",
]  # fmt: skip

_PROBE_SQL = """
SELECT DISTINCT ON (p.i) p.i, u.id
FROM unnest(%s::int[], %s::float8[], %s::float8[]) AS p(i, lon, lat)
JOIN territories_geounit u
  ON u.level = %s AND ST_Intersects(u.geom, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326))
ORDER BY p.i, u.code
"""

_COUNTY_POTENTIAL_SQL = """
SELECT DISTINCT ON (a.id) u.id, a.potential
FROM accounts_account a
JOIN territories_geounit u ON u.level = %s AND ST_Intersects(u.geom, a.location)
WHERE a.location IS NOT NULL
ORDER BY a.id, u.code
"""


# ---------------------------------------------------------------------------------------------------
# Inputs: geography, postal codes, cities


@dataclass
class Geography:
    """The counties of the 50 states and DC, as arrays indexed by position."""

    ids: np.ndarray
    codes: list[str]
    names: list[str]
    state_fips: list[str]
    lonlat: np.ndarray  # centroids, (n, 2)
    position: dict[int, int] = field(default_factory=dict)

    @property
    def state_abbrs(self) -> list[str]:
        return [STATES[f][0] for f in self.state_fips]

    @property
    def districts(self) -> list[str]:
        return [STATES[f][1] for f in self.state_fips]


@dataclass
class Cities:
    """US places with population, restricted to the states, each with the county its centre is in."""

    names: list[str]
    states: list[str]
    lonlat: np.ndarray
    population: np.ndarray
    county: np.ndarray  # position in Geography, -1 when the centre is in no county


def load_geography() -> Geography:
    """Counties whose state is one of the 50 states or DC; raises when none are loaded."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT u.id, u.code, u.name,
                   COALESCE(u.attributes->>'state_fips', s.code, LEFT(u.code, 2)),
                   ST_X(u.centroid), ST_Y(u.centroid)
            FROM territories_geounit u LEFT JOIN territories_geounit s ON s.id = u.parent_id
            WHERE u.level = %s
            ORDER BY u.code
            """,
            [UnitLevel.COUNTY],
        )
        rows = [r for r in cursor.fetchall() if r[3] in STATES]
    if not rows:
        raise ApplicationError("No county geography is loaded: run `manage.py load_geography` first.")
    lonlat = np.array([(r[4], r[5]) for r in rows], dtype=float)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return Geography(
        ids=ids,
        codes=[r[1] for r in rows],
        names=[r[2] for r in rows],
        state_fips=[r[3] for r in rows],
        lonlat=lonlat,
        position={int(i): p for p, i in enumerate(ids)},
    )


def locate_counties(geo: Geography, lonlat: np.ndarray) -> np.ndarray:
    """Position in `geo` of the county containing each point, -1 where none does (water, abroad).

    One set-based query: PostGIS probes the GiST index of the county polygons for all points."""
    if len(lonlat) == 0:
        return np.empty(0, dtype=np.int64)
    found = np.full(len(lonlat), -1, dtype=np.int64)
    with connection.cursor() as cursor:
        cursor.execute(
            _PROBE_SQL,
            [list(range(len(lonlat))), lonlat[:, 0].tolist(), lonlat[:, 1].tolist(), UnitLevel.COUNTY],
        )
        for i, unit_id in cursor.fetchall():
            found[i] = geo.position.get(unit_id, -1)
    return found


class PostalIndex:
    """Nearest ZIP centroid to a point, through a k-d tree on unit-sphere coordinates."""

    def __init__(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT code, ST_X(location), ST_Y(location) FROM accounts_postalcode ORDER BY code"
            )
            rows = cursor.fetchall()
        if not rows:
            raise ApplicationError("No postal codes are loaded: run `manage.py load_geography` first.")
        self.codes = [r[0] for r in rows]
        self.tree = cKDTree(_unit_vectors(np.array([(r[1], r[2]) for r in rows], dtype=float)))

    def nearest(self, lonlat: np.ndarray) -> list[str]:
        _, idx = self.tree.query(_unit_vectors(lonlat))
        return [self.codes[i] for i in np.atleast_1d(idx)]


def _unit_vectors(lonlat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


# GeoNames lists New York City and also its five boroughs as populated places; counting both would
# put New York in the sample twice, so the boroughs give way to the city.
NEW_YORK_BOROUGHS = frozenset({"Brooklyn", "Manhattan", "Queens", "Staten Island", "The Bronx"})


def load_cities(path: Path, geo: Geography) -> Cities:
    """Read name,state,lat,lon,population; keep places in the states with people, in a fixed order."""
    if not Path(path).exists():
        raise ApplicationError(
            f"The cities file {path} is missing: it ships in data/demo (scripts/build_data.py rebuilds it).",
            {"path": [str(path)]},
        )
    rows = []
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            state = (row.get("state") or "").strip().upper()
            try:
                pop, lat, lon = int(float(row["population"])), float(row["lat"]), float(row["lon"])
            except (KeyError, TypeError, ValueError):
                continue
            if state == "NY" and row["name"].strip() in NEW_YORK_BOROUGHS:
                continue
            if state in STATE_ABBRS and pop > 0:
                rows.append((row["name"].strip(), state, lon, lat, pop))
    # Sorted so the sample does not depend on the file's row order.
    rows.sort(key=lambda r: (-r[4], r[1], r[0], r[2], r[3]))
    if not rows:
        raise ApplicationError(f"The cities file {path} has no places in the US states.")
    lonlat = np.array([(r[2], r[3]) for r in rows], dtype=float)
    return Cities(
        names=[r[0] for r in rows],
        states=[r[1] for r in rows],
        lonlat=lonlat,
        population=np.array([r[4] for r in rows], dtype=float),
        county=locate_counties(geo, lonlat),
    )


# ---------------------------------------------------------------------------------------------------
# Accounts


@dataclass
class AccountSpec:
    """Generated account attributes, as parallel arrays; index i is external id DEMO-A{i+1:06d}."""

    external_ids: list[str]
    names: list[str]
    lonlat: np.ndarray
    county: np.ndarray
    city: list[str]
    state: list[str]
    postal_code: list[str]
    industry: list[str]
    segment: np.ndarray  # index into SEGMENTS
    employees: np.ndarray
    revenue: np.ndarray
    potential: np.ndarray
    workload: np.ndarray
    status: np.ndarray  # index into STATUSES
    lead_source: list[str]
    parent: dict[int, int]  # child index -> parent index


def account_external_id(i: int) -> str:
    return f"{DEMO_PREFIX}A{i + 1:06d}"


def _place_accounts(
    rng: np.random.Generator, n: int, cities: Cities, geo: Geography
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """City index, point and county for n accounts: cities drawn in proportion to population, points
    jittered a few km around the centre (wider for big cities) and redrawn until they are on land."""
    usable = cities.county >= 0
    if not usable.any():
        raise ApplicationError("No city centre lies in a loaded county: do the cities match the geography?")
    p = np.where(usable, cities.population, 0.0)
    p /= p.sum()
    city = rng.choice(len(p), size=n, p=p)
    lonlat = np.empty((n, 2))
    county = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    for attempt in range(40):
        if len(pending) == 0:
            break
        if attempt >= 8:
            # Persistently offshore (a harbour city on a coarse coastline): try another city.
            city[pending] = rng.choice(len(p), size=len(pending), p=p)
        pop = cities.population[city[pending]]
        sigma_km = (1.5 + 2.5 * np.sqrt(pop / 1e6)) * (0.5 if attempt >= 4 else 1.0)
        offset = rng.normal(size=(len(pending), 2)) * sigma_km[:, None]
        base = cities.lonlat[city[pending]]
        lat = base[:, 1] + offset[:, 1] / 111.32
        lon = base[:, 0] + offset[:, 0] / (111.32 * np.cos(np.radians(base[:, 1])))
        lonlat[pending] = np.column_stack([lon, lat])
        county[pending] = locate_counties(geo, lonlat[pending])
        pending = pending[county[pending] < 0]
    if len(pending):
        raise ApplicationError(f"Could not place {len(pending)} accounts inside a county.")
    return city, lonlat, county


def generate_accounts(
    *, rng: np.random.Generator, n: int, cities: Cities, geo: Geography, postal: PostalIndex
) -> AccountSpec:
    """All attributes of n demo accounts, drawn from `rng` in a fixed order."""
    city, lonlat, county = _place_accounts(rng, n, cities, geo)
    state_abbrs = geo.state_abbrs

    industry_names = list(INDUSTRIES)
    industry_weights = np.array([w for w, _ in INDUSTRIES.values()])
    industry = rng.choice(len(industry_names), size=n, p=industry_weights / industry_weights.sum())
    segment = rng.choice(3, size=n, p=SEGMENT_WEIGHTS)

    medians = np.array([m for m, _, _ in SEGMENT_EMPLOYEES], dtype=float)[segment]
    lows = np.array([lo for _, lo, _ in SEGMENT_EMPLOYEES])[segment]
    highs = np.array([hi for _, _, hi in SEGMENT_EMPLOYEES])[segment]
    employees = np.clip(np.round(medians * rng.lognormal(0.0, 0.7, n)), lows, highs).astype(np.int64)

    spend = np.array([s for _, s in INDUSTRIES.values()])[industry]
    potential = np.round(1500.0 * employees**0.8 * spend * rng.lognormal(0.0, 0.4, n), -2)
    potential = np.maximum(potential, 1000.0)

    status = np.empty(n, dtype=np.int64)
    for s in range(3):
        mask = segment == s
        status[mask] = rng.choice(3, size=int(mask.sum()), p=SEGMENT_STATUS[s])
    # Customers spend a share of their potential with us (potential >= revenue); others spend nothing.
    wallet_share = rng.beta(2.0, 3.0, n)
    revenue = np.where(status == 0, np.round(potential * wallet_share, 2), 0.0)

    workload = np.round(np.array(SEGMENT_HOURS)[segment] * rng.lognormal(0.0, 0.3, n), 2)

    lead_names = list(LEAD_SOURCES)
    lead_weights = np.array(list(LEAD_SOURCES.values()))
    lead = rng.choice(len(lead_names), size=n, p=lead_weights / lead_weights.sum())

    prefix = rng.integers(0, len(NAME_PREFIXES), n)
    noun = rng.integers(0, 6, n)
    suffix = rng.integers(0, len(NAME_SUFFIXES), n)
    use_city = rng.random(n) < 0.25
    names = []
    for i in range(n):
        first = cities.names[city[i]] if use_city[i] else NAME_PREFIXES[prefix[i]]
        parts = [first, INDUSTRY_NOUNS[industry_names[industry[i]]][noun[i]], NAME_SUFFIXES[suffix[i]]]
        names.append(" ".join(p for p in parts if p))

    parent = _families(rng, n, segment, city)
    industry_of = [industry_names[k] for k in industry]
    for child, par in parent.items():
        # A subsidiary carries the family name and trade, located in its own city.
        names[child] = f"{names[par]} – {cities.names[city[child]]}"
        industry_of[child] = industry_of[par]

    return AccountSpec(
        external_ids=[account_external_id(i) for i in range(n)],
        names=names,
        lonlat=lonlat,
        county=county,
        city=[cities.names[c] for c in city],
        state=[state_abbrs[c] for c in county],
        postal_code=postal.nearest(lonlat),
        industry=industry_of,
        segment=segment,
        employees=employees,
        revenue=revenue,
        potential=potential,
        workload=workload,
        status=status,
        lead_source=[lead_names[k] for k in lead],
        parent=parent,
    )


def _families(rng: np.random.Generator, n: int, segment: np.ndarray, city: np.ndarray) -> dict[int, int]:
    """About 300 corporate families per 20,000 accounts, of 2–8 accounts each: an enterprise or
    mid-market parent and children in other cities."""
    wanted = round(300 * n / DEFAULT_ACCOUNTS)
    parents = [int(i) for i in rng.permutation(np.flatnonzero(segment == 2))]
    parents += [int(i) for i in rng.permutation(np.flatnonzero(segment == 1))]
    parents = parents[:wanted]
    taken = set(parents)
    pool = [int(i) for i in rng.permutation(n) if int(i) not in taken]
    sizes = rng.integers(2, 9, len(parents))
    result: dict[int, int] = {}
    cursor = 0
    for par, size in zip(parents, sizes, strict=True):
        need, skipped = int(size) - 1, []
        while need and cursor < len(pool):
            cand = pool[cursor]
            cursor += 1
            if city[cand] == city[par]:
                skipped.append(cand)
                continue
            result[cand] = par
            need -= 1
        pool[cursor:cursor] = skipped  # same-city candidates may still suit the next family
    return result


def _copy_rows(model, fields: list[str], rows: Iterable[tuple], *, bar: tqdm, every: int = 2000) -> None:
    """COPY rows into the model's table. Measured here, 20,000 accounts take ~20 s through
    bulk_create's multi-row INSERTs (psycopg spends most of it composing the statement) and well
    under a second through COPY. Identifiers are composed by psycopg, values streamed, never
    formatted into SQL."""
    columns = [model._meta.get_field(name).column for name in fields]
    statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.Identifier(model._meta.db_table), pgsql.SQL(", ").join(map(pgsql.Identifier, columns))
    )
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        written = 0
        for row in rows:
            copy.write_row(row)
            written += 1
            if written % every == 0:
                bar.update(every)
        bar.update(written % every)


_ACCOUNT_FIELDS = [
    "external_id", "name", "location", "geocode_quality", "street", "city", "state", "postal_code", "country",
    "industry", "segment", "employees", "revenue", "potential", "workload_hours", "status", "lead_source",
    "attributes", "created", "updated",
]  # fmt: skip


def _insert_accounts(spec: AccountSpec, *, show_progress: bool) -> int:
    """Insert the accounts whose external id is not there yet, then point the new children at their
    parents in one UPDATE. Returns how many were created."""
    existing = set(
        Account.objects.filter(external_id__startswith=f"{DEMO_PREFIX}A").values_list(
            "external_id", flat=True
        )
    )
    missing = [i for i, ext in enumerate(spec.external_ids) if ext not in existing]
    if not missing:
        return 0
    # EWKB hex with the SRID is what PostGIS reads for a geometry column in COPY's text format.
    points = shapely.to_wkb(
        shapely.set_srid(shapely.points(spec.lonlat[missing]), 4326), hex=True, include_srid=True
    )
    now = timezone.now()
    rows = [
        (
            spec.external_ids[i], spec.names[i], points[n], GeocodeQuality.EXACT.value, "", spec.city[i],
            spec.state[i], spec.postal_code[i], "US", spec.industry[i], SEGMENTS[spec.segment[i]].value,
            int(spec.employees[i]), Decimal(f"{spec.revenue[i]:.2f}"), Decimal(f"{spec.potential[i]:.2f}"),
            Decimal(f"{spec.workload[i]:.2f}"), STATUSES[spec.status[i]].value, spec.lead_source[i], "{}",
            now, now,
        )
        for n, i in enumerate(missing)
    ]  # fmt: skip
    with tqdm(total=len(rows), desc="Accounts", unit="acct", disable=not show_progress) as bar:
        _copy_rows(Account, _ACCOUNT_FIELDS, rows, bar=bar)
    children = [i for i in missing if i in spec.parent]
    if children:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE accounts_account c SET parent_id = p.id
                FROM unnest(%s::text[], %s::text[]) AS f(child, parent)
                JOIN accounts_account p ON p.external_id = f.parent
                WHERE c.external_id = f.child
                """,
                [
                    [spec.external_ids[i] for i in children],
                    [spec.external_ids[spec.parent[i]] for i in children],
                ],
            )
    return len(missing)


# ---------------------------------------------------------------------------------------------------
# Territory layout (pure numpy)


def weighted_kmeans(
    xy: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 100
) -> np.ndarray:
    """Labels 0..k-1 for the points, from Lloyd's algorithm with weighted centres and weighted
    k-means++ seeding. Every label is used (k is capped at the number of points)."""
    n = len(xy)
    k = min(k, n)
    w = np.asarray(weights, dtype=float)
    w = w + max(w.mean(), 1.0) * 1e-3  # empty counties still pull a little, and no zero division
    centres = np.empty((k, 2))
    centres[0] = xy[rng.choice(n, p=w / w.sum())]
    d2 = ((xy - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        p = w * d2
        centres[j] = xy[rng.choice(n, p=p / p.sum())] if p.sum() > 0 else xy[rng.integers(n)]
        d2 = np.minimum(d2, ((xy - centres[j]) ** 2).sum(axis=1))
    labels = np.full(n, -1)
    for _ in range(iterations):
        dist = ((xy[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        new_labels = dist.argmin(axis=1)
        new_labels = _fill_empty(new_labels, dist, w, k)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for j in range(k):
            mask = labels == j
            centres[j] = np.average(xy[mask], axis=0, weights=w[mask])
    return labels


def balance_clusters(
    xy: np.ndarray, weights: np.ndarray, labels: np.ndarray, iterations: int = 300
) -> np.ndarray:
    """Refine labels toward equal weight per cluster with additive (power-diagram) weights: a point
    goes to argmin(d² − λ_j), λ rising for light clusters and falling for heavy ones. Power cells are
    convex, so clusters stay compact. Returns the most balanced labelling seen (an indivisible heavy
    point, like Los Angeles County, bounds what any labelling can reach)."""
    w = np.asarray(weights, dtype=float)
    w = w + max(w.mean(), 1.0) * 1e-3
    k = int(labels.max()) + 1
    if k < 2:
        return labels
    target = w.sum() / k

    def centres_of(lab: np.ndarray) -> np.ndarray:
        return np.array([np.average(xy[lab == j], axis=0, weights=w[lab == j]) for j in range(k)])

    def deviation(lab: np.ndarray) -> float:
        return float(np.abs(np.bincount(lab, w, k) / target - 1).max())

    centres = centres_of(labels)
    d2 = ((xy[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    # λ moves in units of a typical squared distance to the nearest centres, decaying so it settles.
    step = 0.5 * float(np.sort(d2, axis=1)[:, :2].mean())
    lam = np.zeros(k)
    best, best_dev = labels, deviation(labels)
    for it in range(iterations):
        d2 = ((xy[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        current = _fill_empty((d2 - lam).argmin(axis=1), d2, w, k)
        dev = deviation(current)
        if dev < best_dev:
            best, best_dev = current, dev
        lam += step * (1 - np.bincount(current, w, k) / target) * 0.99**it
        centres = centres_of(current)
    return best


def _fill_empty(labels: np.ndarray, dist: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Give each empty cluster the point that is worst served by its own centre."""
    labels = labels.copy()
    for j in range(k):
        if (labels == j).any():
            continue
        sizes = np.bincount(labels, minlength=k)
        movable = sizes[labels] > 1
        cost = np.where(movable, w * dist[np.arange(len(labels)), labels], -1.0)
        labels[int(cost.argmax())] = j
    return labels


def apportion(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Split `total` seats by weight (largest remainder), at least one and at most `caps` each."""
    weights = np.asarray(weights, dtype=float)
    caps = np.asarray(caps, dtype=int)
    total = int(min(max(total, len(weights)), caps.sum()))
    seats = np.ones(len(weights), dtype=int)
    share = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1 / len(weights))
    while seats.sum() < total:
        # The district whose ideal share is furthest above its seats gets the next one.
        gap = np.where(seats < caps, share * total - seats, -np.inf)
        seats[int(gap.argmax())] += 1
    return seats


def _project_km(lonlat: np.ndarray) -> np.ndarray:
    """Equirectangular km around the group's mean latitude: plenty for grouping counties."""
    # Aleutian islands west of the antimeridian have positive longitudes; keep Alaska in one piece.
    lon = np.where(lonlat[:, 0] > 0, lonlat[:, 0] - 360.0, lonlat[:, 0])
    lat0 = np.radians(lonlat[:, 1].mean())
    return np.column_stack([lon * 111.32 * np.cos(lat0), lonlat[:, 1] * 111.32])


def leaf_colors(n: int) -> list[str]:
    """n distinct colours spread around the hue circle by the golden angle."""
    colors: list[str] = []
    for i in range(n):
        hue = (i * 0.6180339887) % 1.0
        sat = (0.55, 0.75, 0.65)[i % 3]
        val = (0.85, 0.70, 0.95)[(i // 3) % 3]
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        color = f"#{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"
        while color in colors:  # vanishingly rare; nudge blue until unique
            color = f"{color[:5]}{(int(color[5:], 16) + 1) % 256:02X}"
        colors.append(color)
    return colors


@dataclass
class Layout:
    """The starter plan before it is written: districts present, and each leaf's counties."""

    districts: list[str]
    leaf_district: list[str]
    leaf_counties: list[np.ndarray]
    leaf_potential: list[float]


def layout_territories(
    *, geo: Geography, potential: np.ndarray, territories: int, rng: np.random.Generator
) -> Layout:
    """Group counties into leaves: each district gets its potential's share of the leaves; inside
    it, a weighted k-means on county centroids makes compact groups, then power-diagram weights
    even out their potential while keeping them compact."""
    county_district = np.array(geo.districts)
    present = [d for d in DISTRICTS if (county_district == d).any()]
    weights = np.array([potential[county_district == d].sum() for d in present])
    caps = np.array([(county_district == d).sum() for d in present])
    seats = apportion(territories, weights, caps)
    layout = Layout(districts=present, leaf_district=[], leaf_counties=[], leaf_potential=[])
    for d, k in zip(present, seats, strict=True):
        members = np.flatnonzero(county_district == d)
        xy = _project_km(geo.lonlat[members])
        labels = weighted_kmeans(xy, potential[members], int(k), rng)
        labels = balance_clusters(xy, potential[members], labels)
        groups = [members[labels == j] for j in range(int(k))]
        # Largest first, so -01 is the district's biggest market.
        groups.sort(key=lambda g: (-potential[g].sum(), geo.codes[g[0]]))
        for g in groups:
            layout.leaf_district.append(d)
            layout.leaf_counties.append(g)
            layout.leaf_potential.append(float(potential[g].sum()))
    return layout


# ---------------------------------------------------------------------------------------------------
# Writing the plan, reps and logins


def county_potential(geo: Geography) -> np.ndarray:
    """Sum of account potential per county (all accounts with a location, demo or not)."""
    result = np.zeros(len(geo.ids))
    with connection.cursor() as cursor:
        cursor.execute(_COUNTY_POTENTIAL_SQL, [UnitLevel.COUNTY])
        for unit_id, amount in cursor.fetchall():
            pos = geo.position.get(unit_id)
            if pos is not None:
                result[pos] += float(amount)
    return result


def _largest_city(cities: Cities, counties: np.ndarray) -> int | None:
    """Index of the most populous city whose centre lies in one of `counties` (cities are sorted by
    population, so the first match wins)."""
    hits = np.flatnonzero(np.isin(cities.county, counties))
    return int(hits[0]) if len(hits) else None


def rep_external_id(i: int) -> str:
    return f"{DEMO_PREFIX}R{i + 1:03d}"


def _rep_names(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    pairs = [(f, last) for f in FIRST_NAMES for last in LAST_NAMES]
    return [pairs[i] for i in rng.choice(len(pairs), size=n, replace=False)]


def _home(
    cities: Cities, geo: Geography, counties: np.ndarray, postal: PostalIndex
) -> tuple[Point, str, str]:
    """A rep's home base: the biggest city of their area, or the area's first county centroid."""
    city = _largest_city(cities, counties)
    lonlat = cities.lonlat[city] if city is not None else geo.lonlat[counties[0]]
    return Point(float(lonlat[0]), float(lonlat[1]), srid=4326), postal.nearest(lonlat[None, :])[0]


def _save_if_changed(obj, values: dict) -> bool:
    """Set fields that differ and save only those, so a rerun touches no row (and no timestamp)."""
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    for name in changed:
        setattr(obj, name, values[name])
    if changed:
        obj.save(update_fields=changed + (["updated"] if hasattr(obj, "updated") else []))
    return bool(changed)


def build_starter_plan(
    *,
    year: int,
    geo: Geography,
    cities: Cities,
    postal: PostalIndex,
    territories: int,
    seed: int,
    show_progress: bool,
) -> tuple[Plan, dict]:
    """Create the starter plan with its hierarchy, reps, memberships and county assignments, then
    materialize account assignments. Returns the plan and figures for the summary."""
    potential = county_potential(geo)
    layout = layout_territories(
        geo=geo, potential=potential, territories=territories, rng=np.random.default_rng([seed, 3])
    )
    start = date(year, 1, 1)
    overlapping = Plan.objects.filter(status=PlanStatus.ACTIVE).filter(
        Q(effective_to__isnull=True) | Q(effective_to__gt=start)
    )
    # Only one plan may be active at a date; a real active plan wins and the demo one stays a draft.
    status = PlanStatus.DRAFT if overlapping.exists() else PlanStatus.ACTIVE
    plan = Plan.objects.create(
        name=STARTER_PLAN_NAME.format(year=year),
        description="Demo starter plan made by `manage.py load_demo`: regions are Census regions, "
        "districts groups of states, territories counties grouped by weighted k-means.",
        status=status,
        effective_from=start,
        version=1,
        published_at=timezone.now() if status == PlanStatus.ACTIVE else None,
    )

    rng = np.random.default_rng([seed, 2])
    county_district = np.array(geo.districts)
    regions = [r for r in REGIONS if any(DISTRICTS[d][0] == r for d in layout.districts)]
    n_leaves = len(layout.leaf_district)
    n_reps = n_leaves + len(regions) + len(layout.districts)
    names = _rep_names(rng, n_reps)
    reps: dict[str, Rep] = {}

    def rep_for(i: int, key: str, title: str, counties: np.ndarray, manager: Rep | None, **extra) -> Rep:
        first, last = names[i]
        home, zip_code = _home(cities, geo, counties, postal)
        rep, _ = Rep.objects.update_or_create(
            external_id=rep_external_id(i),
            defaults=dict(
                name=f"{first} {last}",
                email=f"{first}.{last}@demo.example.com".lower(),
                title=title,
                home_location=home,
                home_postal_code=zip_code,
                manager=manager,
                active=True,
                capacity_fte=extra.get("capacity", Decimal("1.00")),
                specialties=extra.get("specialties", []),
            ),
        )
        reps[key] = rep
        return rep

    # Sellers take DEMO-R001.. in leaf order; managers follow, regions then districts.
    for r_pos, r in enumerate(regions):
        counties = np.flatnonzero(
            np.isin(county_district, [d for d in layout.districts if DISTRICTS[d][0] == r])
        )
        rep_for(n_leaves + r_pos, r, "Regional Vice President", counties, None)
    for d_pos, d in enumerate(layout.districts):
        counties = np.flatnonzero(county_district == d)
        rep_for(n_leaves + len(regions) + d_pos, d, "District Sales Manager", counties, reps[DISTRICTS[d][0]])

    region_nodes = {
        r: Territory.objects.create(
            plan=plan, code=r, name=REGIONS[r], level_name="region", color=REGION_COLORS[r]
        )
        for r in regions
    }
    district_nodes = {
        d: Territory.objects.create(
            plan=plan,
            parent=region_nodes[DISTRICTS[d][0]],
            code=d,
            name=DISTRICTS[d][1],
            level_name="district",
            color=DISTRICT_COLORS[list(DISTRICTS).index(d)],
        )
        for d in layout.districts
    }
    colors = leaf_colors(n_leaves)
    industries = list(INDUSTRIES)
    counter: dict[str, int] = {}
    units: list[UnitAssignment] = []
    memberships: list[TerritoryMembership] = []
    for i, (d, counties) in enumerate(zip(layout.leaf_district, layout.leaf_counties, strict=True)):
        counter[d] = counter.get(d, 0) + 1
        city = _largest_city(cities, counties)
        name = (
            f"{cities.names[city]}, {cities.states[city]}"
            if city is not None
            else f"{DISTRICTS[d][1]} {counter[d]}"
        )
        leaf = Territory.objects.create(
            plan=plan,
            parent=district_nodes[d],
            code=f"{d}-{counter[d]:02d}",
            name=name,
            level_name="territory",
            color=colors[i],
        )
        specialties = [industries[int(rng.integers(len(industries)))]]
        if rng.random() < 0.3:
            specialties.append(Segment.ENTERPRISE.value)
        capacity = ("1.00", "1.00", "1.00", "1.00", "1.00", "1.00", "1.00", "1.00", "0.80", "0.50")[
            int(rng.integers(10))
        ]
        rep = rep_for(
            i,
            leaf.code,
            ("Account Executive", "Senior Account Executive")[int(rng.integers(2))],
            counties,
            reps[d],
            capacity=Decimal(capacity),
            specialties=specialties,
        )
        memberships.append(TerritoryMembership(territory=leaf, rep=rep, role=MemberRole.PRIMARY, share=1))
        units += [
            UnitAssignment(
                plan=plan, unit_id=int(geo.ids[c]), territory=leaf, source=AssignmentSource.GEOGRAPHY
            )
            for c in counties
        ]
    TerritoryMembership.objects.bulk_create(memberships)
    UnitAssignment.objects.bulk_create(units, batch_size=2000)
    Change.objects.create(
        plan=plan,
        kind=ChangeKind.PLAN_CREATED,
        plan_version=plan.version,
        payload={"name": plan.name, "source": "load_demo", "seed": seed, "territories": n_leaves},
    )
    with tqdm(total=100, desc="Materializing", unit="%", disable=not show_progress) as bar:

        def progress(percent: int, message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(max(0, percent - bar.n))

        materialized = plan_materialize(plan=plan, actor=None, progress=progress).as_dict()
    if status == PlanStatus.ACTIVE:
        # Published once built: ownership on a date before publication is the owner at publication
        # (territories.ownership), so the materialization must not count as moves after it.
        plan.published_at = timezone.now()
        plan.save(update_fields=["published_at", "updated"])
    leaf_pot = np.array(layout.leaf_potential)
    figures = {
        "status": status,
        "regions": len(regions),
        "districts": len(layout.districts),
        "leaves": n_leaves,
        "units": len(units),
        "reps": n_reps,
        "leaf_potential_max_over_mean": round(float(leaf_pot.max() / leaf_pot.mean()), 2)
        if n_leaves
        else None,
        "leaf_potential_min_over_mean": round(float(leaf_pot.min() / leaf_pot.mean()), 2)
        if n_leaves
        else None,
        "materialize": materialized,
    }
    return plan, figures


@dataclass
class Login:
    username: str
    role: str
    password: str
    scope: str


def ensure_logins(*, plan: Plan) -> list[Login]:
    """The demo logins and their scope links: every region and district node gets a manager login
    (linked to the manager's Rep); `rep.demo` is the primary rep of the first leaf of the West's
    first district. Existing users keep their password; only missing links and roles are set."""
    encoded: list[str] = []  # one hash for all new users, made once: PBKDF2 costs ~0.3 s per call
    checked: dict[str, bool] = {}

    def ensure(
        username: str, role: str, first: str, last: str, *, superuser: bool = False, follow_rep: bool = False
    ) -> tuple[User, str]:
        user = User.objects.filter(username=username).first()
        created = user is None
        if created:
            if not encoded:
                encoded.append(make_password(DEMO_PASSWORD))
                checked[encoded[0]] = True
            user = User.objects.create(
                username=username,
                role=role,
                first_name=first,
                last_name=last,
                password=encoded[0],
                email=f"{username}@demo.example.com",
                is_staff=superuser,
                is_superuser=superuser,
            )
        else:
            values = {"role": role}
            if follow_rep:  # after a reset with another seed, the login belongs to a new person
                values |= {"first_name": first, "last_name": last}
            if superuser:
                values |= {"is_staff": True, "is_superuser": True}
            _save_if_changed(user, values)
        if user.password not in checked:
            checked[user.password] = check_password(DEMO_PASSWORD, user.password)
        return user, DEMO_PASSWORD if checked[user.password] else "(kept: changed earlier)"

    logins: list[Login] = []
    planner, pw = ensure("planner", Role.PLANNER, "Pat", "Planner")
    logins.append(Login("planner", Role.PLANNER, pw, "all plans"))
    _, pw = ensure("admin", Role.ADMIN, "Ada", "Admin", superuser=True)
    logins.append(Login("admin", "admin (superuser)", pw, "everything, /admin/"))
    if plan.owner_id is None:
        _save_if_changed(plan, {"owner": planner})

    nodes = {t.code: t for t in plan.territories.filter(level_name__in=["region", "district"])}
    region_order = [r for r in REGIONS if r in nodes]
    district_order = [d for d in DISTRICTS if d in nodes]
    leaves_by_district: dict[str, Territory] = {}
    for leaf in plan.territories.filter(level_name="territory").select_related("parent").order_by("code"):
        leaves_by_district.setdefault(leaf.parent.code, leaf)
    sellers = {
        m.territory_id: m.rep
        for m in TerritoryMembership.objects.filter(
            territory__plan=plan, role=MemberRole.PRIMARY
        ).select_related("rep")
    }
    # The manager Rep of a node is the manager of its children's reps (a district's leaves' reps,
    # a region's district managers); found through the plan rather than by a stored code.
    district_manager_rep = {
        d: sellers[leaf.id].manager
        for d, leaf in leaves_by_district.items()
        if d in nodes and leaf.id in sellers
    }
    region_manager_rep = {
        r: next((m.manager for d, m in district_manager_rep.items() if DISTRICTS[d][0] == r and m), None)
        for r in region_order
    }

    def manage(code: str, slug: str, rep: Rep | None, label: str) -> Login:
        first, _, last = rep.name.partition(" ") if rep else ("Demo", "", "Manager")
        user, pw = ensure(f"manager.{slug}", Role.MANAGER, first, last, follow_rep=rep is not None)
        if nodes[code].manager_id != user.id:
            _save_if_changed(nodes[code], {"manager": user})
        if rep is not None:
            _link_rep(rep, user)
        return Login(user.username, Role.MANAGER, pw, label)

    manager_logins = [
        manage(r, REGION_SLUGS[r], region_manager_rep.get(r), f"{REGIONS[r]} region ({r})")
        for r in region_order
    ] + [
        manage(d, DISTRICTS[d][2], district_manager_rep.get(d), f"{DISTRICTS[d][1]} district ({d})")
        for d in district_order
    ]
    shown_region = "W" if "W" in region_order else (region_order[0] if region_order else None)
    shown_district = next((d for d in district_order if DISTRICTS[d][0] == shown_region), None)
    logins += [m for m in manager_logins if m.scope.endswith(f"({shown_region})")]
    logins += [m for m in manager_logins if m.scope.endswith(f"({shown_district})")]

    leaf = leaves_by_district.get(shown_district) if shown_district else None
    if leaf is not None and leaf.id in sellers:
        rep = sellers[leaf.id]
        first, _, last = rep.name.partition(" ")
        user, pw = ensure("rep.demo", Role.REP, first, last, follow_rep=True)
        _link_rep(rep, user)
        logins.append(Login(user.username, Role.REP, pw, f"territory {leaf.code} {leaf.name} as {rep.name}"))
    others = len(manager_logins) - sum(1 for m in logins if m.role == Role.MANAGER)
    if others:
        logins.append(
            Login(f"manager.<{others} more>", Role.MANAGER, DEMO_PASSWORD, "one per region and district")
        )
    return logins


def _link_rep(rep: Rep, user: User) -> None:
    """Point `rep.user` at `user`, first unlinking any other rep holding that login (one-to-one)."""
    if rep.user_id == user.id:
        return
    Rep.objects.filter(user=user).exclude(pk=rep.pk).update(user=None, updated=timezone.now())
    _save_if_changed(rep, {"user": user})


# ---------------------------------------------------------------------------------------------------
# Fiscal periods and bookings


def ensure_fiscal_periods(years: Iterable[int]) -> int:
    """Year > 4 quarters > 12 months for each year (fiscal year = calendar year). Returns created."""
    created = 0

    def get(kind: str, name: str, start: date, end: date, parent: FiscalPeriod | None) -> FiscalPeriod:
        nonlocal created
        period, made = FiscalPeriod.objects.get_or_create(
            kind=kind, start=start, defaults={"name": name, "end": end, "parent": parent}
        )
        created += made
        return period

    for year in years:
        fy = get(PeriodKind.YEAR, f"FY{year}", date(year, 1, 1), date(year, 12, 31), None)
        for q in range(4):
            first_month = 3 * q + 1
            quarter = get(
                PeriodKind.QUARTER,
                f"FY{year}-Q{q + 1}",
                date(year, first_month, 1),
                date(year, first_month + 2, monthrange(year, first_month + 2)[1]),
                fy,
            )
            for m in range(first_month, first_month + 3):
                get(
                    PeriodKind.MONTH,
                    f"FY{year}-M{m:02d}",
                    date(year, m, 1),
                    date(year, m, monthrange(year, m)[1]),
                    quarter,
                )
    return created


@dataclass
class BookingSpec:
    account: int  # index into AccountSpec
    amount: float
    booked_on: date
    component: str


def generate_bookings(*, rng: np.random.Generator, spec: AccountSpec, years: list[int]) -> list[BookingSpec]:
    """Closed-won deals for each of `years` (whole years; the caller cuts at today). A customer was won
    in some year (new business, one deal per contract), renews its contracts in later years and buys
    upsells; a churned account renewed only in the earliest year. Amounts follow the account's revenue."""
    deals: list[tuple[int, int, str, float]] = []  # account, year, component, amount
    earliest = min(years)
    for i in np.flatnonzero(np.isin(spec.status, [0, 2])):
        segment = int(spec.segment[i])
        contracts = SEGMENT_CONTRACTS[segment]
        per_contract = (float(spec.revenue[i]) or float(spec.potential[i]) * 0.3) / contracts
        churned = spec.status[i] == 2
        won = rng.choice([earliest - 1, *years], p=[0.7, 0.15, 0.15]) if not churned else earliest - 1
        for year in years:
            if year < won or (churned and year != earliest):
                continue
            for _ in range(contracts):
                if year == won:
                    deals.append(
                        (i, year, Component.NEW_BUSINESS, per_contract * rng.lognormal(np.log(0.7), 0.3))
                    )
                elif rng.random() < (0.7 if churned else 0.9):
                    deals.append(
                        (i, year, Component.RENEWAL, per_contract * rng.lognormal(np.log(0.85), 0.15))
                    )
            if not churned:
                for _ in range(rng.poisson(SEGMENT_UPSELLS[segment])):
                    deals.append((i, year, Component.UPSELL, per_contract * rng.lognormal(np.log(0.25), 0.5)))
    months = rng.choice(12, size=len(deals), p=MONTH_WEIGHTS / MONTH_WEIGHTS.sum()) + 1
    day_fraction = rng.random(len(deals))
    result = []
    for (i, year, component, amount), month, frac in zip(deals, months, day_fraction, strict=True):
        day = 1 + int(frac * monthrange(year, int(month))[1])
        result.append(
            BookingSpec(int(i), round(max(amount, 100.0), 2), date(year, int(month), day), component)
        )
    return result


def booking_external_id(i: int) -> str:
    return f"{DEMO_PREFIX}B{i + 1:07d}"


def _insert_bookings(
    specs: list[BookingSpec],
    account_spec: AccountSpec,
    *,
    today: date,
    plan: Plan | None,
    show_progress: bool,
) -> int:
    """Insert bookings dated up to today that are not there yet, crediting the account's primary rep
    in the starter plan. Ids are numbered over the whole years, so a later run adds only new dates."""
    existing = set(
        Booking.objects.filter(external_id__startswith=f"{DEMO_PREFIX}B").values_list(
            "external_id", flat=True
        )
    )
    due = [(booking_external_id(n), b) for n, b in enumerate(specs) if b.booked_on <= today]
    missing = [(ext, b) for ext, b in due if ext not in existing]
    if not missing:
        return 0
    account_ids = dict(
        Account.objects.filter(external_id__startswith=f"{DEMO_PREFIX}A").values_list("external_id", "id")
    )
    rep_by_account: dict[int, int] = {}
    if plan is not None:
        rep_by_account = dict(
            AccountAssignment.objects.filter(
                plan=plan, role=AssignmentRole.PRIMARY, territory__memberships__role=MemberRole.PRIMARY
            ).values_list("account_id", "territory__memberships__rep_id")
        )
    now = timezone.now()
    rows = []
    for ext, b in missing:
        account_id = account_ids.get(account_spec.external_ids[b.account])
        if account_id is not None:  # an account deleted by hand since: skip its bookings
            rows.append((ext, account_id, Decimal(f"{b.amount:.2f}"), b.booked_on, b.component.value,
                         rep_by_account.get(account_id), now, now))  # fmt: skip
    with tqdm(total=len(rows), desc="Bookings", unit="bkg", disable=not show_progress) as bar:
        _copy_rows(
            Booking,
            ["external_id", "account", "amount", "booked_on", "component", "rep", "created", "updated"],
            rows,
            bar=bar,
        )
    return len(rows)


# ---------------------------------------------------------------------------------------------------
# Quotas


def ensure_quota_plan(*, plan: Plan, year: int) -> tuple[QuotaPlan | None, str]:
    """An active FY quota plan on the starter plan, allocated by quotas' own service (a blend of
    potential and last year's bookings) from a company target of last year's bookings plus growth,
    with activity and retention goals on every territory. Kept as it is when it exists."""
    from quotas.choices import AllocationMethod, QuotaPlanStatus
    from quotas.services import (
        activity_goal_set,
        quota_plan_allocate,
        quota_plan_create,
        quota_plan_transition,
    )

    name = DEMO_QUOTA_PLAN_NAME.format(year=year)
    existing = QuotaPlan.objects.filter(territory_plan=plan, name=name).first()
    if existing is not None:
        return existing, ""
    if plan.status != PlanStatus.ACTIVE:
        return None, "The starter plan is not active: no demo quota plan was made."
    fiscal_year = FiscalPeriod.objects.filter(kind=PeriodKind.YEAR, name=f"FY{year}").first()
    if fiscal_year is None:
        return None, f"No fiscal year FY{year}: no demo quota plan was made."
    last_year = Booking.objects.filter(
        external_id__startswith=f"{DEMO_PREFIX}B", booked_on__year=year - 1
    ).values("component")
    totals = {row["component"]: row["total"] for row in last_year.annotate(total=models.Sum("amount"))}
    if not any(totals.values()):
        return (
            None,
            f"No demo bookings in {year - 1} to set FY{year} targets from: no demo quota plan was made.",
        )
    targets = {
        c.value: (Decimal(totals.get(c.value) or 0) * DEMO_QUOTA_GROWTH / 1000).quantize(Decimal("1")) * 1000
        for c in Component
    }
    planner = User.objects.filter(username="planner").first()
    quota_plan = quota_plan_create(
        name=name, territory_plan=plan, fiscal_year=fiscal_year, targets=targets, actor=planner
    )
    quota_plan_allocate(quota_plan=quota_plan, method=AllocationMethod.BLEND, blend_weight=0.5, actor=planner)
    quota_plan_transition(quota_plan=quota_plan, status=QuotaPlanStatus.APPROVED, actor=planner)
    quota_plan = quota_plan_transition(quota_plan=quota_plan, status=QuotaPlanStatus.ACTIVE, actor=planner)
    if planner is not None:
        for territory in Territory.objects.filter(plan=plan, children__isnull=True).order_by("code"):
            for metric, target in DEMO_GOALS.items():
                activity_goal_set(
                    quota_plan=quota_plan, territory=territory, metric=metric, target=target, actor=planner
                )
    total = sum(targets.values())
    return (
        quota_plan,
        f"Quota plan '{name}': company target {total:,.0f} (last year's bookings + 10%), allocated.",
    )


# ---------------------------------------------------------------------------------------------------
# Reset and the entry point


def starter_plans():
    return Plan.objects.filter(name__regex=_STARTER_PLAN_RE)


def _delete_many(queryset) -> int:
    """Delete tens of thousands of rows quickly. Django's collector loads every instance first
    (8 s for 20,000 accounts here); clearing each relation set-based, as its on_delete says, and then
    one DELETE takes under a second. Relations with other on_delete rules go through the collector."""
    model = queryset.model
    ids = queryset.values("pk")
    relations = [rel for rel in model._meta.related_objects if rel.one_to_many or rel.one_to_one]
    if len(relations) != len(model._meta.related_objects) or any(
        rel.on_delete not in (models.CASCADE, models.SET_NULL) for rel in relations
    ):
        return queryset.delete()[0]
    for rel in relations:
        related = rel.related_model._base_manager.filter(**{f"{rel.field.name}__in": ids})
        if rel.on_delete is models.CASCADE:
            related.delete()
        else:
            related.update(**{rel.field.name: None})
    subquery, params = ids.query.sql_with_params()
    statement = pgsql.SQL("DELETE FROM {} WHERE {} IN ({})").format(
        pgsql.Identifier(model._meta.db_table), pgsql.Identifier(model._meta.pk.column), pgsql.SQL(subquery)
    )
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(cursor.cursor), params)
        return cursor.rowcount


def demo_reset() -> dict[str, int]:
    """Delete the demo rows: starter plans (with their territories and assignments), bookings,
    accounts and reps whose external id starts with DEMO-. Logins and fiscal periods stay."""
    demo_quota_plans = QuotaPlan.objects.filter(
        territory_plan__in=starter_plans(), name__regex=_DEMO_QUOTA_PLAN_RE
    )
    blocking = list(
        QuotaPlan.objects.filter(territory_plan__in=starter_plans())
        .exclude(pk__in=demo_quota_plans.values("pk"))
        .values_list("name", flat=True)
    )
    if blocking:
        raise ApplicationError(
            "Quota plans are built on the starter plan; delete them before --reset.",
            {"quota_plans": blocking},
        )
    counts = {"quota_plans": demo_quota_plans.delete()[1].get("quotas.QuotaPlan", 0)}
    try:
        counts["plans"] = starter_plans().delete()[1].get("territories.Plan", 0)
    except ProtectedError as exc:  # pragma: no cover - a model added later that protects plans
        raise ApplicationError(f"The starter plan is still referenced: {exc}") from exc
    counts["bookings"] = Booking.objects.filter(external_id__startswith=DEMO_PREFIX).delete()[0]
    counts["accounts"] = _delete_many(Account.objects.filter(external_id__startswith=DEMO_PREFIX))
    counts["reps"] = (
        Rep.objects.filter(external_id__startswith=DEMO_PREFIX).delete()[1].get("accounts.Rep", 0)
    )
    return counts


@dataclass
class DemoSummary:
    """What a load did, for the command to print and tests to check."""

    seed: int
    accounts_created: int = 0
    accounts_total: int = 0
    bookings_created: int = 0
    bookings_total: int = 0
    fiscal_periods_created: int = 0
    plan: Plan | None = None
    plan_created: bool = False
    plan_figures: dict = field(default_factory=dict)
    logins: list[Login] = field(default_factory=list)
    reset: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    quota_plan: QuotaPlan | None = None


def demo_load(
    *,
    accounts: int = DEFAULT_ACCOUNTS,
    seed: int = DEFAULT_SEED,
    reset: bool = False,
    territories: int = DEFAULT_TERRITORIES,
    cities_path: Path | str | None = None,
    today: date | None = None,
    show_progress: bool = False,
) -> DemoSummary:
    """Load (or complete) the demo data set. Deterministic for a given seed and geography, and
    idempotent: what exists is kept. With `reset`, demo rows are deleted and rebuilt first.

    Needs the county geography, postal codes and the cities file from `load_geography`."""
    if accounts < 1:
        raise ApplicationError("The number of accounts must be at least 1.", {"accounts": [str(accounts)]})
    today = today or timezone.localdate()
    years = [today.year - 1, today.year]
    summary = DemoSummary(seed=seed)
    clock = _Clock(summary.seconds)
    with transaction.atomic():
        if reset:
            with clock("reset"):
                summary.reset = demo_reset()
        with clock("inputs"):
            geo = load_geography()
            postal = PostalIndex()
            cities = load_cities(Path(cities_path or DEFAULT_CITIES_PATH), geo)
        with clock("generate accounts"):
            spec = generate_accounts(
                rng=np.random.default_rng([seed, 1]), n=accounts, cities=cities, geo=geo, postal=postal
            )
        with clock("insert accounts"):
            summary.accounts_created = _insert_accounts(spec, show_progress=show_progress)
        if summary.accounts_created < accounts:
            summary.notes.append(
                "Existing demo accounts were kept as they are; "
                "use --reset to rebuild them (e.g. for another seed)."
            )
        with clock("fiscal periods"):
            summary.fiscal_periods_created = ensure_fiscal_periods(years)
        plan = (
            starter_plans().filter(name=STARTER_PLAN_NAME.format(year=today.year)).order_by("created").first()
        )
        if plan is None:
            with clock("starter plan"):
                plan, summary.plan_figures = build_starter_plan(
                    year=today.year,
                    geo=geo,
                    cities=cities,
                    postal=postal,
                    territories=territories,
                    seed=seed,
                    show_progress=show_progress,
                )
            summary.plan_created = True
            if plan.status != PlanStatus.ACTIVE:
                summary.notes.append(
                    f"Another plan is active from {plan.effective_from}: the starter plan was left a draft."
                )
        else:
            summary.notes.append(f"The starter plan '{plan.name}' exists and was kept.")
        summary.plan = plan
        with clock("logins"):
            summary.logins = ensure_logins(plan=plan)
        with clock("bookings"):
            bookings = generate_bookings(rng=np.random.default_rng([seed, 4]), spec=spec, years=years)
            summary.bookings_created = _insert_bookings(
                bookings, spec, today=today, plan=plan, show_progress=show_progress
            )
        with clock("quotas"):
            summary.quota_plan, quota_note = ensure_quota_plan(plan=plan, year=today.year)
        if quota_note:
            summary.notes.append(quota_note)
        summary.accounts_total = Account.objects.filter(external_id__startswith=f"{DEMO_PREFIX}A").count()
        summary.bookings_total = Booking.objects.filter(external_id__startswith=f"{DEMO_PREFIX}B").count()
    # Fresh statistics for the tables just filled: PostgreSQL plans the planner's and dashboards'
    # queries from them, and autovacuum may be off or not have run yet (a 100k-account demo planned
    # with none took nested loops over every assignment: 0.3 s for the planner's figures).
    with connection.cursor() as cursor:
        for model in (Account, AccountAssignment, Change, Booking):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return summary


class _Clock:
    """Times named stages into a dict: `with clock("accounts"): ...`."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds

    def __call__(self, name: str) -> _Clock:
        self.name = name
        return self

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.seconds[self.name] = round(time.perf_counter() - self.start, 2)
