/* global maplibregl */
// Compare page: both plans' territory outlines on one map (A solid blue, B dashed orange) or side by
// side on two maps that move together, the accounts that change owner as points, and checkboxes to
// show or hide each layer.
import {boundsOf, createMap} from './small_map.js';

const config = JSON.parse(document.getElementById('compare-config').textContent);
const container = document.getElementById('compare-maps');
const elementA = document.getElementById('compare-map');
const elementB = document.getElementById('compare-map-b');
const status = document.getElementById('compare-map-status');
const boxes = {a: document.getElementById('show-a'), b: document.getElementById('show-b'), moved: document.getElementById('show-moved')};
const state = {side: false, data: null, mapB: null};

const mapA = createMap(elementA, config.states_url);
window.TesseraCompare = {map: mapA, mapB: null, ready: false};
const loadedA = new Promise((resolve) => mapA.once('load', resolve));

async function outlines(url) {
  const response = await fetch(url, {credentials: 'same-origin'});
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}

function movedFeatures(rows) {
  return {
    type: 'FeatureCollection',
    features: rows.map(([lon, lat, id, name, from, to]) => ({
      type: 'Feature',
      id,
      properties: {id, name, from: from || 'unassigned', to: to || 'unassigned'},
      geometry: {type: 'Point', coordinates: [lon, lat]},
    })),
  };
}

// Adds the layers of plan A and/or B and the moved accounts to `map`.
function addLayers(map, plans) {
  if (plans.includes('a')) {
    map.addSource('plan-a', {type: 'geojson', data: state.data.a, promoteId: 'id'});
    map.addLayer({id: 'plan-a-fill', type: 'fill', source: 'plan-a', paint: {'fill-color': '#1f6feb', 'fill-opacity': 0.06}});
    map.addLayer({id: 'plan-a-line', type: 'line', source: 'plan-a', paint: {'line-color': '#1f6feb', 'line-width': 2.2}});
  }
  if (plans.includes('b')) {
    map.addSource('plan-b', {type: 'geojson', data: state.data.b, promoteId: 'id'});
    map.addLayer({
      id: 'plan-b-line',
      type: 'line',
      source: 'plan-b',
      paint: {'line-color': '#d9480f', 'line-width': 2, 'line-dasharray': [2, 1.5]},
    });
  }
  map.addSource('moved', {type: 'geojson', data: movedFeatures(config.moved), promoteId: 'id'});
  map.addLayer({
    id: 'moved',
    type: 'circle',
    source: 'moved',
    paint: {
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 3, 3, 8, 6],
      'circle-color': '#c2255c',
      'circle-stroke-color': '#ffffff',
      'circle-stroke-width': 1,
    },
  });
  const popup = new maplibregl.Popup({closeButton: true, closeOnClick: true});
  map.on('click', 'moved', (event) => {
    const props = event.features[0].properties;
    popup.setLngLat(event.lngLat).setText(`${props.name}: ${props.from} (A) → ${props.to} (B)`).addTo(map);
  });
  map.on('mouseenter', 'moved', () => { map.getCanvas().style.cursor = 'pointer'; });
  map.on('mouseleave', 'moved', () => { map.getCanvas().style.cursor = ''; });
}

function show(map, layerId, visible) {
  if (map && map.getLayer(layerId)) map.setLayoutProperty(layerId, 'visibility', visible ? 'visible' : 'none');
}

// Side by side, plan B lives on the right-hand map only.
function applyVisibility() {
  show(mapA, 'plan-a-fill', boxes.a.checked);
  show(mapA, 'plan-a-line', boxes.a.checked);
  show(mapA, 'plan-b-line', boxes.b.checked && !state.side);
  show(mapA, 'moved', boxes.moved.checked);
  show(state.mapB, 'plan-b-line', boxes.b.checked);
  show(state.mapB, 'moved', boxes.moved.checked);
}

// Keeps two maps on the same view; `syncing` stops the echo of the follower's own move event.
function linkMaps(first, second) {
  let syncing = false;
  const follow = (source, target) => () => {
    if (syncing) return;
    syncing = true;
    target.jumpTo({center: source.getCenter(), zoom: source.getZoom(), bearing: source.getBearing(), pitch: source.getPitch()});
    syncing = false;
  };
  first.on('move', follow(first, second));
  second.on('move', follow(second, first));
}

async function openSecondMap() {
  if (state.mapB) return;
  const mapB = createMap(elementB, config.states_url);
  state.mapB = mapB;
  window.TesseraCompare.mapB = mapB;
  await new Promise((resolve) => mapB.once('load', resolve));
  addLayers(mapB, ['b']);
  mapB.jumpTo({center: mapA.getCenter(), zoom: mapA.getZoom()});
  linkMaps(mapA, mapB);
  applyVisibility();
  mapB.once('idle', () => { elementB.dataset.ready = 'true'; });
}

async function setView(side) {
  state.side = side;
  container.classList.toggle('side', side);
  elementB.hidden = !side;
  mapA.resize();
  if (side) {
    await openSecondMap();
    state.mapB.resize();
    state.mapB.jumpTo({center: mapA.getCenter(), zoom: mapA.getZoom()});
  }
  applyVisibility();
}

async function init() {
  try {
    const [a, b] = await Promise.all([outlines(config.a.outlines_url), outlines(config.b.outlines_url)]);
    state.data = {a, b};
  } catch (error) {
    status.textContent = 'The territory outlines could not be loaded; the table below is complete.';
    status.classList.add('error');
    return;
  }
  await loadedA;
  addLayers(mapA, ['a', 'b']);
  for (const box of Object.values(boxes)) box.addEventListener('change', applyVisibility);
  applyVisibility();
  for (const radio of document.querySelectorAll('input[name=compare-view]')) {
    radio.addEventListener('change', () => setView(radio.value === 'side' && radio.checked));
  }

  // The moved accounts are what this page is about: frame them, or both plans when nothing moves.
  const {a, b} = state.data;
  const bounds = config.moved.length ? boundsOf([], config.moved) : boundsOf([...a.features, ...b.features]);
  if (bounds) mapA.fitBounds(bounds, {padding: 24, maxZoom: 9, duration: 0});

  const drawn = config.moved.length;
  status.textContent = `A: ${a.features.length} territories, B: ${b.features.length} territories; `
    + `${drawn.toLocaleString()} moved accounts drawn`
    + (config.moved_total > drawn ? ` of ${config.moved_total.toLocaleString()}.` : '.');
  mapA.once('idle', () => {
    window.TesseraCompare.ready = true;
    elementA.dataset.ready = 'true';
  });
}

init();
