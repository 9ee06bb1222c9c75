/* global maplibregl */
// The map planner: territories painted on the project's own state/county tiles, accounts as vector
// tiles (aggregated at low zoom), the hierarchy with its figures, selection, moves, locks,
// undo/redo, and "why is this account here?". Every edit goes through the API with the plan
// version; a stale edit shows the conflict banner and nothing is lost (the selection stays).
// planner_tools.js builds on window.TesseraPlanner (see docs in contracts: "Front-end hooks").

const config = JSON.parse(document.getElementById('planner-config').textContent);
const $ = (id) => document.getElementById(id);
const plan = {...config.plan};
const user = {...config.user};
const state = {
    target: 'accounts', // or 'units'
    tool: 'click',
    accountIds: [],
    unitIds: [],
    territoryId: null,
    totals: null,
    metrics: null,
    map: null, // plan map payload: territories, units, labels
    history: {undo: [], redo: []},
    colourBy: 'segment',
    heatmap: '',
    metric: 'potential',
    tilesVersion: null, // the plan version the account tiles on the map were drawn from
};
const SEA = '#dce6ef';
const LAND = '#f7f5ef';
const fmt = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
const money = new Intl.NumberFormat('en-US', {notation: 'compact', maximumFractionDigits: 1});

// ---------------------------------------------------------------------------------------------
// API

function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector('input[name=csrfmiddlewaretoken]');
    return input ? input.value : '';
}

async function api(path, {method = 'GET', body} = {}) {
    const options = {method, headers: {Accept: 'application/json'}, credentials: 'same-origin'};
    if (body !== undefined) {
        options.headers['Content-Type'] = 'application/json';
        options.headers['X-CSRFToken'] = csrfToken();
        options.body = JSON.stringify(body);
    }
    const response = await fetch(config.api + path.replace(/^\//, ''), options);
    let data = null;
    try {
        data = await response.json();
    } catch (error) {
        data = {message: `${response.status} ${response.statusText}`, errors: {}};
    }
    if (response.status === 409) {
        showConflict(data && data.message);
        const error = new Error(data.message);
        error.body = data;
        error.status = 409;
        throw error;
    }
    if (!response.ok) {
        const error = new Error((data && data.message) || response.statusText);
        error.body = data;
        error.status = response.status;
        throw error;
    }
    return data;
}

function showConflict(message) {
    $('planner-conflict-text').textContent = (message || 'This plan changed since you loaded it.') +
        ' Your selection is kept: load the latest version, check it, and apply your edit again.';
    $('planner-conflict').hidden = false;
    $('planner-conflict-reload').focus();
}

function showError(error) {
    if (error && error.status === 409) return; // the conflict banner says it
    const box = $('planner-error');
    const body = error && error.body;
    let text = (body && body.message) || String(error && error.message || error);
    if (body && body.errors) {
        const details = Object.entries(body.errors).map(([k, v]) => `${k}: ${[].concat(v).join(' ')}`);
        if (details.length) text += ` (${details.join('; ')})`;
    }
    box.textContent = text;
    box.hidden = false;
}

function clearError() {
    $('planner-error').hidden = true;
}

function setVersion(version, {tiles = true} = {}) {
    if (typeof version === 'number' && version !== plan.version) {
        plan.version = version;
        $('planner-version').textContent = String(version);
    }
    if (tiles) swapAccountTiles();
}

// Owners and locks are drawn from tiles of one plan version: a new version loads new tiles.
function swapAccountTiles() {
    const source = state.mapObject && state.mapObject.getSource('accounts');
    if (source && state.tilesVersion !== plan.version) {
        state.tilesVersion = plan.version;
        source.setTiles([accountsTileUrl()]);
    }
}

// ---------------------------------------------------------------------------------------------
// Map

function accountsTileUrl() {
    return `${config.tiles.accounts}?v=${plan.version}`;
}

function colourExpression(kind) {
    if (kind === 'territory') {
        return ['coalesce', ['get', 'color'], '#9aa3af'];
    }
    const table = config.colours[kind] || {};
    const pairs = Object.entries(table).flat();
    if (!pairs.length) return '#6b7280';
    return ['match', ['coalesce', ['get', kind], ''], ...pairs, '#9aa3af'];
}

function buildStyle() {
    state.tilesVersion = plan.version;
    const sources = {
        base: {type: 'vector', tiles: [config.tiles.base], minzoom: 0, maxzoom: 12},
        accounts: {type: 'vector', tiles: [accountsTileUrl()], minzoom: 0, maxzoom: 14},
        lasso: {type: 'geojson', data: {type: 'FeatureCollection', features: []}},
    };
    const layers = [{id: 'sea', type: 'background', paint: {'background-color': SEA}}];
    if (config.basemap.url) {
        sources.basemap = {
            type: 'raster', tiles: [config.basemap.url], tileSize: 256,
            attribution: config.basemap.attribution || undefined,
        };
        layers.push({id: 'basemap', type: 'raster', source: 'basemap'});
    } else {
        layers.push({
            id: 'states-land', type: 'fill', source: 'base', 'source-layer': 'states',
            paint: {'fill-color': LAND},
        });
    }
    layers.push(
        {
            id: 'units-fill', type: 'fill', source: 'base', 'source-layer': 'units',
            paint: {
                'fill-color': ['to-color', ['coalesce', ['feature-state', 'color'], 'rgba(0,0,0,0)']],
                'fill-opacity': ['case', ['boolean', ['feature-state', 'selected'], false], 0.85, 0.5],
            },
        },
        {
            id: 'units-line', type: 'line', source: 'base', 'source-layer': 'units', minzoom: 5,
            paint: {'line-color': '#8a94a3', 'line-width': 0.4},
        },
        {
            id: 'units-selected', type: 'line', source: 'base', 'source-layer': 'units',
            filter: ['==', ['geometry-type'], 'Polygon'],
            paint: {
                'line-color': '#111827',
                'line-width': ['case', ['boolean', ['feature-state', 'selected'], false], 2.5, 0],
            },
        },
        {
            id: 'states-line', type: 'line', source: 'base', 'source-layer': 'states',
            paint: {'line-color': '#4b5563', 'line-width': 0.9},
        },
        {
            id: 'accounts-heat', type: 'heatmap', source: 'accounts', 'source-layer': 'accounts',
            layout: {visibility: 'none'},
            paint: {
                'heatmap-weight': ['interpolate', ['linear'], ['get', 'potential'], 0, 0, 5e6, 1],
                'heatmap-radius': ['interpolate', ['linear'], ['zoom'], 3, 12, 10, 28],
                'heatmap-opacity': 0.75,
            },
        },
        {
            id: 'accounts', type: 'circle', source: 'accounts', 'source-layer': 'accounts',
            paint: {
                'circle-color': colourExpression('segment'),
                'circle-radius': [
                    'case', ['>', ['coalesce', ['get', 'n'], 1], 1],
                    ['interpolate', ['linear'], ['sqrt', ['get', 'n']], 1, 4, 40, 15],
                    ['interpolate', ['linear'], ['sqrt', ['coalesce', ['get', 'revenue'], 0]], 0, 2.5, 1000, 6, 3200, 11],
                ],
                'circle-opacity': 0.8,
                'circle-stroke-color': ['case', ['boolean', ['feature-state', 'selected'], false], '#111827',
                    ['boolean', ['get', 'locked'], false], '#7c2d12', '#ffffff'],
                'circle-stroke-width': ['case', ['boolean', ['feature-state', 'selected'], false], 2.5,
                    ['boolean', ['get', 'locked'], false], 1.5, 0.5],
            },
        },
        {
            id: 'lasso-fill', type: 'fill', source: 'lasso',
            paint: {'fill-color': '#1f6feb', 'fill-opacity': 0.12},
        },
        {
            id: 'lasso-line', type: 'line', source: 'lasso',
            paint: {'line-color': '#1f6feb', 'line-width': 1.5, 'line-dasharray': [2, 1]},
        },
    );
    // No glyphs and no sprite: labels are HTML markers, so nothing is requested from a glyph server.
    return {version: 8, sources, layers};
}

function createMap() {
    const map = new maplibregl.Map({
        container: 'planner-map',
        style: buildStyle(),
        bounds: [[-125, 24], [-66.5, 49.5]],
        fitBoundsOptions: {padding: 20},
        attributionControl: config.basemap.url ? {compact: true} : false,
        boxZoom: false, // shift-drag is our box select
        maxZoom: 16,
    });
    map.addControl(new maplibregl.NavigationControl({showCompass: false}), 'top-left');
    state.mapObject = map;
    return map;
}

// ---------------------------------------------------------------------------------------------
// Territory colours (feature state on the base units) and labels (HTML markers)

let painted = new Map(); // unit id -> territory id
let labelMarkers = [];

function territoryById(id) {
    return state.map ? state.map.territories.find((t) => t.id === id) : undefined;
}

function paintUnits(map) {
    const colours = new Map(state.map.territories.map((t) => [t.id, t.color]));
    const next = new Map(state.map.units.map(([unit, territory]) => [unit, territory]));
    for (const unit of painted.keys()) {
        if (!next.has(unit)) map.setFeatureState({source: 'base', sourceLayer: 'units', id: unit}, {color: null});
    }
    for (const [unit, territory] of next) {
        if (painted.get(unit) !== territory) {
            map.setFeatureState({source: 'base', sourceLayer: 'units', id: unit}, {color: colours.get(territory) || null});
        }
    }
    painted = next;
}

function placeLabels(map) {
    labelMarkers.forEach((marker) => marker.remove());
    labelMarkers = state.map.labels.map((label) => {
        const territory = territoryById(label.territory_id);
        const element = document.createElement('div');
        element.className = 'territory-label';
        element.textContent = territory ? territory.code : String(label.territory_id);
        element.title = territory ? `${territory.code} ${territory.name}` : '';
        element.setAttribute('aria-hidden', 'true');
        return new maplibregl.Marker({element}).setLngLat([label.lon, label.lat]).addTo(map);
    });
    updateLabelVisibility(map);
}

function updateLabelVisibility(map) {
    const show = map.getZoom() >= 3;
    labelMarkers.forEach((marker) => { marker.getElement().hidden = !show; });
}

async function loadPlanMap(map) {
    state.map = await api(`plans/${plan.id}/map/`);
    setVersion(state.map.plan.version);
    paintUnits(map);
    placeLabels(map);
    fillTerritoryMenu();
}

// ---------------------------------------------------------------------------------------------
// Panel: hierarchy with figures

async function loadMetrics() {
    state.metrics = await api(`plans/${plan.id}/metrics/`);
    if (state.metrics.plan) setVersion(state.metrics.plan.version);
    renderTree();
}

function depthOf(territory, byId) {
    let depth = 0;
    let node = territory;
    while (node && node.parent_id && byId.has(node.parent_id) && depth < 20) {
        node = byId.get(node.parent_id);
        depth += 1;
    }
    return depth;
}

function renderTree() {
    const data = state.metrics;
    if (!data) return;
    const tbody = $('planner-tree').querySelector('tbody');
    tbody.textContent = '';
    const byId = new Map(data.territories.map((t) => [t.id, t]));
    const children = new Map();
    for (const t of data.territories) {
        const key = byId.has(t.parent_id) ? t.parent_id : null;
        if (!children.has(key)) children.set(key, []);
        children.get(key).push(t);
    }
    const ordered = [];
    const walk = (key) => {
        for (const t of (children.get(key) || []).sort((a, b) => a.code.localeCompare(b.code))) {
            ordered.push(t);
            walk(t.id);
        }
    };
    walk(null);
    const tolerance = data.tolerance || 0.05;
    for (const t of ordered) {
        const row = document.createElement('tr');
        row.dataset.territoryId = String(t.id);
        if (t.id === state.territoryId) row.classList.add('current');
        if (t.outside_tolerance) row.classList.add('outside');
        const name = document.createElement('th');
        name.scope = 'row';
        name.style.paddingLeft = `${0.4 + depthOf(t, byId) * 1.1}rem`;
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'link';
        button.innerHTML = `<span class="swatch" style="background:${t.color}"></span>`;
        button.append(`${t.code} ${t.name}`);
        button.setAttribute('aria-label', `${t.level_name} ${t.code} ${t.name}`);
        button.addEventListener('click', () => selectTerritory(t.id));
        name.append(button);
        if (t.contiguous === false) {
            const warn = document.createElement('span');
            warn.className = 'warn';
            warn.textContent = ' ⚠ not contiguous';
            name.append(warn);
        }
        if (t.locked_accounts) {
            const locks = document.createElement('small');
            locks.className = 'muted';
            locks.textContent = ` · ${fmt.format(t.locked_accounts)} locked`;
            name.append(locks);
        }
        row.append(name);
        const m = t.metrics || {};
        for (const [key, format] of [['accounts', fmt], ['revenue', money], ['potential', money], ['workload', fmt]]) {
            const cell = document.createElement('td');
            cell.className = 'num';
            cell.textContent = format.format(m[key] || 0);
            row.append(cell);
        }
        const reps = document.createElement('td');
        reps.textContent = (t.reps || []).map((r) => r.name).join(', ') || '—';
        row.append(reps);
        row.append(deviationCell(t, tolerance));
        if (t.is_leaf && user.can_plan) {
            row.addEventListener('dragover', (event) => { event.preventDefault(); row.classList.add('drop'); });
            row.addEventListener('dragleave', () => row.classList.remove('drop'));
            row.addEventListener('drop', (event) => {
                event.preventDefault();
                row.classList.remove('drop');
                moveSelection(t.id);
            });
        }
        tbody.append(row);
    }
    const unassigned = data.unassigned || {};
    const totals = data.totals || {};
    $('planner-summary').textContent =
        `${fmt.format(totals.accounts || 0)} accounts in view of your scope · ` +
        `${fmt.format(unassigned.accounts || 0)} unassigned` +
        ` · tolerance ±${Math.round(tolerance * 100)}%`;
    $('planner-summary').dataset.unassigned = String(unassigned.accounts || 0);
}

function deviationCell(t, tolerance) {
    const cell = document.createElement('td');
    const deviation = t.deviation ? t.deviation[state.metric] : null;
    if (deviation === null || deviation === undefined) {
        cell.textContent = '—';
        return cell;
    }
    const outside = Math.abs(deviation) > tolerance;
    const bar = document.createElement('div');
    bar.className = 'devbar' + (outside ? ' outside' : '');
    const fill = document.createElement('span');
    const width = Math.min(50, Math.abs(deviation) * 100); // ±50% fills half the bar
    fill.style.width = `${width}%`;
    fill.style[deviation < 0 ? 'right' : 'left'] = '50%';
    bar.append(fill);
    const text = document.createElement('span');
    text.className = 'devtext';
    text.textContent = `${deviation > 0 ? '+' : ''}${(deviation * 100).toFixed(1)}%${outside ? ' ⚑' : ''}`;
    cell.append(bar, text);
    cell.title = outside ? `Outside the ±${Math.round(tolerance * 100)}% tolerance` : 'Within tolerance';
    return cell;
}

function fillTerritoryMenu() {
    const select = $('planner-target-territory');
    if (!select || !state.map) return;
    const keep = select.value;
    select.textContent = '';
    for (const t of state.map.territories.filter((x) => x.is_leaf).sort((a, b) => a.code.localeCompare(b.code))) {
        const option = document.createElement('option');
        option.value = String(t.id);
        option.textContent = `${t.code} ${t.name}`;
        select.append(option);
    }
    if (keep) select.value = keep;
}

// ---------------------------------------------------------------------------------------------
// Selection

function selection() {
    return {accountIds: [...state.accountIds], unitIds: [...state.unitIds], territoryId: state.territoryId};
}

function setFeatureSelection(sourceLayer, source, oldIds, newIds) {
    const map = state.mapObject;
    const keep = new Set(newIds);
    for (const id of oldIds) {
        if (!keep.has(id)) map.setFeatureState({source, sourceLayer, id}, {selected: false});
    }
    for (const id of newIds) map.setFeatureState({source, sourceLayer, id}, {selected: true});
}

function applySelection({accountIds = [], unitIds = [], totals = null, truncated = false, byTerritory = null}) {
    setFeatureSelection('accounts', 'accounts', state.accountIds, accountIds);
    setFeatureSelection('units', 'base', state.unitIds, unitIds);
    state.accountIds = accountIds;
    state.unitIds = unitIds;
    state.totals = totals;
    state.truncated = truncated;
    state.byTerritory = byTerritory;
    renderSelection();
    document.dispatchEvent(new CustomEvent('planner:selection', {detail: selection()}));
}

function renderSelection() {
    const box = $('planner-selection');
    const ids = state.target === 'units' ? state.unitIds : state.accountIds;
    const noun = state.target === 'units' ? 'unit' : 'account';
    if (!ids.length) {
        box.textContent = 'Nothing selected.';
        box.draggable = false;
    } else {
        let text = `${fmt.format(ids.length)} ${noun}${ids.length === 1 ? '' : 's'} selected`;
        if (state.truncated && state.target === 'accounts') {
            text += ` (the first of ${fmt.format(state.totals.accounts)}: select a smaller area to move them all)`;
        }
        if (state.totals && state.target === 'accounts') {
            text += ` · revenue ${money.format(state.totals.revenue)} · potential ${money.format(state.totals.potential)}`;
        }
        box.textContent = text;
        box.draggable = user.can_plan;
    }
    box.dataset.count = String(ids.length);
    for (const id of ['planner-move', 'planner-lock', 'planner-unlock']) {
        const button = $(id);
        if (!button) continue;
        button.disabled = !ids.length || (id !== 'planner-move' && state.target === 'units');
    }
}

async function selectArea(request) {
    clearError();
    try {
        const result = await request();
        applySelection({
            accountIds: result.account_ids, unitIds: result.unit_ids, totals: result.totals,
            truncated: result.truncated, byTerritory: result.by_territory,
        });
    } catch (error) {
        showError(error);
    }
}

function selectBbox(west, south, east, north) {
    const bbox = [west, south, east, north].map((v) => v.toFixed(6)).join(',');
    return selectArea(() => api(`plans/${plan.id}/selection/?bbox=${bbox}`));
}

function selectPolygon(ring) {
    return selectArea(() => api(`plans/${plan.id}/selection/`, {
        method: 'POST', body: {polygon: {type: 'Polygon', coordinates: [ring]}},
    }));
}

function toggleId(list, id, additive) {
    if (!additive) return [id];
    return list.includes(id) ? list.filter((x) => x !== id) : [...list, id];
}

function selectTerritory(id) {
    state.territoryId = id;
    for (const row of $('planner-tree').querySelectorAll('tbody tr')) {
        row.classList.toggle('current', row.dataset.territoryId === String(id));
    }
    const select = $('planner-target-territory');
    if (select && territoryById(id) && territoryById(id).is_leaf) select.value = String(id);
    const label = state.map && state.map.labels.find((l) => l.territory_id === id);
    if (label) state.mapObject.easeTo({center: [label.lon, label.lat]});
    document.dispatchEvent(new CustomEvent('planner:selection', {detail: selection()}));
}

function installSelectionTools(map) {
    const canvas = map.getCanvasContainer();
    let drawing = null;

    const lassoData = (points, closed) => ({
        type: 'FeatureCollection',
        features: points.length > 1 ? [{
            type: 'Feature', properties: {},
            geometry: closed
                ? {type: 'Polygon', coordinates: [[...points, points[0]]]}
                : {type: 'LineString', coordinates: points},
        }] : [],
    });

    const start = (event) => {
        if (state.tool === 'click' || event.originalEvent.button !== 0) return;
        event.preventDefault();
        map.dragPan.disable();
        drawing = {points: [event.lngLat.toArray()], origin: event.lngLat};
    };
    const move = (event) => {
        if (!drawing) return;
        const here = event.lngLat;
        if (state.tool === 'box') {
            const o = drawing.origin;
            drawing.points = [[o.lng, o.lat], [here.lng, o.lat], [here.lng, here.lat], [o.lng, here.lat]];
        } else {
            drawing.points.push(here.toArray());
        }
        map.getSource('lasso').setData(lassoData(drawing.points, state.tool === 'box'));
    };
    const end = () => {
        if (!drawing) return;
        const points = drawing.points;
        drawing = null;
        map.dragPan.enable();
        map.getSource('lasso').setData(lassoData([], false));
        if (points.length < 3) return;
        if (state.tool === 'box') {
            const lons = points.map((p) => p[0]);
            const lats = points.map((p) => p[1]);
            selectBbox(Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats));
        } else {
            selectPolygon([...points, points[0]]);
        }
    };
    map.on('mousedown', start);
    map.on('mousemove', move);
    map.on('mouseup', end);
    canvas.addEventListener('mouseleave', end);

    map.on('click', (event) => {
        if (state.tool !== 'click') return;
        const additive = event.originalEvent.shiftKey || event.originalEvent.ctrlKey || event.originalEvent.metaKey;
        if (state.target === 'accounts') {
            const hits = map.queryRenderedFeatures(event.point, {layers: ['accounts']})
                .filter((f) => f.id !== undefined && f.id !== null && f.id !== 0);
            if (!hits.length) {
                const clusters = map.queryRenderedFeatures(event.point, {layers: ['accounts']});
                if (clusters.length) map.easeTo({center: event.lngLat, zoom: Math.min(map.getZoom() + 2, 16)});
                else if (!additive) applySelection({});
                return;
            }
            const id = Number(hits[0].id);
            applySelection({accountIds: toggleId(state.accountIds, id, additive), unitIds: state.unitIds});
            showWhy(id);
        } else {
            const hits = map.queryRenderedFeatures(event.point, {layers: ['units-fill']});
            if (!hits.length) {
                if (!additive) applySelection({});
                return;
            }
            const id = Number(hits[0].id);
            applySelection({accountIds: state.accountIds, unitIds: toggleId(state.unitIds, id, additive)});
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Why

async function showWhy(accountId) {
    const section = $('planner-why');
    const body = $('planner-why-body');
    section.hidden = false;
    body.textContent = 'Asking the resolver…';
    try {
        const why = await api(`plans/${plan.id}/accounts/${accountId}/why/`);
        body.textContent = '';
        const title = document.createElement('p');
        title.innerHTML = '<strong></strong> <span class="muted"></span>';
        title.querySelector('strong').textContent = why.account.name;
        title.querySelector('span').textContent = why.account.external_id;
        const explanation = document.createElement('p');
        explanation.className = 'why-explanation';
        explanation.textContent = why.explanation;
        const facts = document.createElement('ul');
        const add = (text) => { const li = document.createElement('li'); li.textContent = text; facts.append(li); };
        add(`Decided by: ${why.step}${why.rule ? ` (rule “${why.rule.name}”, priority ${why.rule.priority})` : ''}`);
        if (why.unit) add(`Geography: ${why.unit.name} (${why.unit.level} ${why.unit.code})`);
        if (why.parent) add(`Parent account: ${why.parent.name} (${why.parent.external_id})`);
        add(`Stored owner: ${why.stored.territory ? `${why.stored.territory.code} ${why.stored.territory.name}` : 'none'}` +
            `${why.stored.source ? ` · ${why.stored.source}` : ''}${why.stored.locked ? ' · locked' : ''}`);
        body.append(title, explanation, facts);
        if (why.note) {
            const note = document.createElement('p');
            note.className = 'warn';
            note.textContent = why.note;
            body.append(note);
        }
    } catch (error) {
        body.textContent = (error.body && error.body.message) || String(error.message);
    }
}

// ---------------------------------------------------------------------------------------------
// Edits

async function edit(request, local = null) {
    clearError();
    try {
        const result = await request();
        // The hierarchy shows the new totals first when it can (exact sums from the selection);
        // the tile swap and the reload that confirm them, with the unit colours and history, start
        // on the next task, after the browser has drawn those totals.
        const shown = Boolean(local && result && local(result));
        if (result && typeof result.version === 'number') setVersion(result.version, {tiles: false});
        const figures = $('planner');
        figures.dataset.figures = '0';
        const reloaded = new Promise((resolve) => { setTimeout(resolve, 0); }).then(() => {
            swapAccountTiles();
            return refresh();
        }).then(() => { figures.dataset.figures = '1'; });
        state.settled = reloaded.catch(showError);
        if (!shown) await reloaded;
        document.dispatchEvent(new CustomEvent('planner:changed', {detail: {version: plan.version}}));
        return result;
    } catch (error) {
        showError(error);
        return null;
    }
}

// Moves the selection's figures (per current owner, summed by the server when the selection was
// made) from their territories to the target and up both chains of parents, then redraws the
// hierarchy. Returns false when it cannot (no figures for this selection), so the caller waits
// for the reload instead.
function applyMoveLocally(byTerritory, targetId) {
    const data = state.metrics;
    if (!data || !byTerritory) return false;
    const names = data.metric_names || ['accounts', 'revenue', 'potential', 'workload'];
    const byId = new Map(data.territories.map((t) => [t.id, t]));
    if (!byId.has(targetId)) return false;
    const shift = (id, row, sign) => {
        if (id === null || id === undefined) {
            data.unassigned = data.unassigned || {};
            for (const m of names) data.unassigned[m] = (data.unassigned[m] || 0) + sign * (row[m] || 0);
            return;
        }
        let node = byId.get(id);
        for (let guard = 0; node && guard < 50; guard += 1) {
            node.metrics = node.metrics || {};
            for (const m of names) node.metrics[m] = (node.metrics[m] || 0) + sign * (row[m] || 0);
            node = byId.get(node.parent_id);
        }
    };
    for (const row of byTerritory) {
        shift(row.territory_id, row, -1);
        shift(targetId, row, +1);
    }
    const tolerance = data.tolerance || 0.05;
    for (const t of data.territories) {
        if (!t.target) continue;
        t.deviation = {};
        for (const m of names) t.deviation[m] = t.target[m] ? t.metrics[m] / t.target[m] - 1 : null;
        t.outside_tolerance = names.some((m) => t.deviation[m] !== null && Math.abs(t.deviation[m]) > tolerance);
    }
    renderTree();
    return true;
}

function moveSelection(territoryId) {
    const territory = Number(territoryId || ($('planner-target-territory') || {}).value);
    if (!territory) return null;
    const body = {territory, version: plan.version};
    let local = null;
    if (state.target === 'units') {
        if (!state.unitIds.length) return null;
        body.unit_ids = state.unitIds;
    } else {
        if (!state.accountIds.length) return null;
        body.account_ids = state.accountIds;
        const byTerritory = state.byTerritory;
        local = (result) => result.moved > 0 && applyMoveLocally(byTerritory, territory);
    }
    return edit(() => api(`plans/${plan.id}/assignments/`, {method: 'POST', body}), local).then((result) => {
        // After a move the selection's owners changed: its per-owner figures no longer apply.
        if (result) state.byTerritory = null;
        return result;
    });
}

function lockSelection(locked) {
    if (!state.accountIds.length) return null;
    return edit(() => api(`plans/${plan.id}/locks/`, {
        method: 'POST', body: {account_ids: state.accountIds, locked, version: plan.version},
    }));
}

function undo() {
    if (!state.history.undo.length) return null;
    return edit(() => api(`plans/${plan.id}/undo/`, {method: 'POST', body: {version: plan.version}}));
}

function redo() {
    if (!state.history.redo.length) return null;
    return edit(() => api(`plans/${plan.id}/redo/`, {method: 'POST', body: {version: plan.version}}));
}

async function loadHistory() {
    if (!user.can_plan) return;
    const history = await api(`plans/${plan.id}/history/`);
    state.history = history;
    const undoButton = $('planner-undo');
    const redoButton = $('planner-redo');
    undoButton.disabled = !history.undo.length;
    redoButton.disabled = !history.redo.length;
    undoButton.textContent = history.undo.length ? `Undo: ${history.undo[0].label}` : 'Undo';
    redoButton.textContent = history.redo.length ? `Redo: ${history.redo[0].label}` : 'Redo';
}

async function refresh() {
    const map = state.mapObject;
    // setVersion swaps the account tile URLs when the version moved, so owners and locks redraw.
    await Promise.all([loadPlanMap(map), loadMetrics(), loadHistory()]);
    // Selected accounts keep their highlight when the new tiles arrive (state is kept by id).
    setFeatureSelection('accounts', 'accounts', [], state.accountIds);
}

// ---------------------------------------------------------------------------------------------
// Controls

function setAccountStyle(map) {
    map.setPaintProperty('accounts', 'circle-color', colourExpression(state.colourBy));
    const legend = $('planner-legend');
    legend.textContent = '';
    const table = state.colourBy === 'territory' ? {} : (config.colours[state.colourBy] || {});
    for (const [name, colour] of Object.entries(table)) {
        const item = document.createElement('span');
        item.innerHTML = `<i style="background:${colour}"></i>`;
        item.append(name.replace('_', ' '));
        legend.append(item);
    }
    if (state.colourBy === 'territory') legend.textContent = 'Accounts take their territory colour from zoom ' + config.tiles.raw_min_zoom + '.';
}

function setHeatmap(map) {
    const weight = state.heatmap === 'customers'
        ? ['coalesce', ['get', 'customers'], 0]
        : ['interpolate', ['linear'], ['coalesce', ['get', 'potential'], 0], 0, 0, 5e6, 1];
    map.setPaintProperty('accounts-heat', 'heatmap-weight', weight);
    map.setLayoutProperty('accounts-heat', 'visibility', state.heatmap ? 'visible' : 'none');
    map.setPaintProperty('accounts', 'circle-opacity', state.heatmap ? 0.25 : 0.8);
}

function installControls(map) {
    for (const radio of document.querySelectorAll('input[name=planner-target]')) {
        radio.addEventListener('change', () => {
            state.target = radio.value;
            renderSelection();
        });
    }
    for (const button of document.querySelectorAll('button.tool')) {
        button.addEventListener('click', () => {
            state.tool = button.dataset.tool;
            for (const other of document.querySelectorAll('button.tool')) {
                other.setAttribute('aria-pressed', String(other === button));
            }
            map.getCanvas().style.cursor = state.tool === 'click' ? '' : 'crosshair';
        });
    }
    $('planner-select-view').addEventListener('click', () => {
        const b = map.getBounds();
        selectBbox(Math.max(b.getWest(), -180), Math.max(b.getSouth(), -90), Math.min(b.getEast(), 180), Math.min(b.getNorth(), 90));
    });
    $('planner-select-clear').addEventListener('click', () => applySelection({}));
    $('planner-colour-by').addEventListener('change', (event) => {
        state.colourBy = event.target.value;
        setAccountStyle(map);
    });
    $('planner-heatmap').addEventListener('change', (event) => {
        state.heatmap = event.target.value;
        setHeatmap(map);
    });
    $('planner-metric').addEventListener('change', (event) => {
        state.metric = event.target.value;
        renderTree();
    });
    $('planner-conflict-reload').addEventListener('click', async (event) => {
        // The banner stays until the latest version is in, so an edit cannot go out with the old one.
        event.target.disabled = true;
        try {
            await refresh();
            $('planner-conflict').hidden = true;
        } catch (error) {
            showError(error);
        } finally {
            event.target.disabled = false;
        }
    });
    $('planner-conflict-dismiss').addEventListener('click', () => { $('planner-conflict').hidden = true; });
    const selectionBox = $('planner-selection');
    selectionBox.addEventListener('dragstart', (event) => {
        event.dataTransfer.setData('text/plain', 'tessera-selection');
        event.dataTransfer.effectAllowed = 'move';
    });
    if (user.can_plan) {
        $('planner-move').addEventListener('click', () => moveSelection());
        $('planner-lock').addEventListener('click', () => lockSelection(true));
        $('planner-unlock').addEventListener('click', () => lockSelection(false));
        $('planner-undo').addEventListener('click', () => undo());
        $('planner-redo').addEventListener('click', () => redo());
        document.addEventListener('keydown', (event) => {
            if (!(event.ctrlKey || event.metaKey) || event.key.toLowerCase() !== 'z') return;
            if (event.target.closest && event.target.closest('input, textarea, select')) return;
            event.preventDefault();
            if (event.shiftKey) redo(); else undo();
        });
    }
    map.on('zoomend', () => updateLabelVisibility(map));
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
    const map = createMap();
    // The plan's data loads while the map fetches its style and first tiles. The figures (the
    // metrics endpoint) arrive when they are ready; the map and the editing tools do not wait.
    const styled = new Promise((resolve) => map.once('style.load', resolve));
    const planMap = api(`plans/${plan.id}/map/`);
    const history = loadHistory().catch(showError);
    const metrics = loadMetrics().catch(showError);
    await styled;
    installSelectionTools(map);
    installControls(map);
    setAccountStyle(map);
    try {
        state.map = await planMap;
        setVersion(state.map.plan.version);
        paintUnits(map);
        placeLabels(map);
        fillTerritoryMenu();
    } catch (error) {
        showError(error);
    }
    await history;
    renderSelection();
    window.TesseraPlanner = {
        plan,
        user,
        selection,
        api,
        setVersion,
        refresh,
        toolbar: $('planner-tools'),
        map,
        // Also offered for tools: select accounts or units by id (e.g. after a rule preview).
        select: (ids) => applySelection({accountIds: ids.accountIds || [], unitIds: ids.unitIds || []}),
        // Used by the benchmark to drive the same code paths as the buttons: lasso, then move.
        selectPolygon,
        move: (territoryId) => moveSelection(territoryId),
        settled: () => state.settled || Promise.resolve(),
    };
    $('planner').dataset.ready = '1';
    document.dispatchEvent(new CustomEvent('planner:ready'));
    await metrics;
    $('planner').dataset.figures = '1';
}

start();
