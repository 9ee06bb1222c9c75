/* global maplibregl */
// A small map over the project's own state outlines (no internet, no glyphs): a plan's territory
// outlines, an account's location or a rep's home, handed over in #small-map-config:
//   {states_url, outlines_url?, outlines? (GeoJSON), points?: [{lon, lat, label}]}
// Also exports the base style and a bounds helper for compare.js.

const SEA = '#dce6ef';
const LAND = '#f7f5ef';
const US_BOUNDS = [[-125, 24], [-66.5, 49.5]];

export function baseStyle(statesUrl) {
  return {
    version: 8,
    sources: {
      states: {type: 'geojson', data: statesUrl},
    },
    layers: [
      {id: 'sea', type: 'background', paint: {'background-color': SEA}},
      {id: 'states-fill', type: 'fill', source: 'states', paint: {'fill-color': LAND}},
      {id: 'states-line', type: 'line', source: 'states', paint: {'line-color': '#7a8594', 'line-width': 0.7}},
    ],
  };
}

// [[minLon, minLat], [maxLon, maxLat]] of every coordinate in GeoJSON features and [lon, lat] points;
// null if there are none. Shapes that cross the antimeridian (the Aleutians) are measured with eastern
// longitudes shifted by −360° when that gives the narrower box, so Alaska does not stretch the view
// around the globe.
export function boundsOf(features, points = []) {
  const lons = [];
  const lats = [];
  const visit = (coords) => {
    if (typeof coords[0] === 'number') {
      lons.push(coords[0]);
      lats.push(coords[1]);
      return;
    }
    for (const inner of coords) visit(inner);
  };
  for (const feature of features) {
    if (feature.geometry) visit(feature.geometry.coordinates);
  }
  for (const point of points) visit([point[0], point[1]]);
  if (!lons.length) return null;
  // A loop, not Math.min(...values): outlines can hold more coordinates than a call takes arguments.
  const span = (values) => {
    let low = Infinity;
    let high = -Infinity;
    for (const value of values) {
      if (value < low) low = value;
      if (value > high) high = value;
    }
    return [low, high];
  };
  let [west, east] = span(lons);
  const [shiftedWest, shiftedEast] = span(lons.map((lon) => (lon > 0 ? lon - 360 : lon)));
  if (shiftedEast - shiftedWest < east - west) [west, east] = [shiftedWest, shiftedEast];
  const [south, north] = span(lats);
  return [[west, south], [east, north]];
}

export function createMap(container, statesUrl) {
  const map = new maplibregl.Map({
    container,
    style: baseStyle(statesUrl),
    bounds: US_BOUNDS,
    fitBoundsOptions: {padding: 10},
    attributionControl: false,
    dragRotate: false,
    pitchWithRotate: false,
  });
  map.addControl(new maplibregl.NavigationControl({showCompass: false}), 'top-right');
  map.touchZoomRotate.disableRotation();
  return map;
}

function pointFeatures(points) {
  return {
    type: 'FeatureCollection',
    features: points.map((point, index) => ({
      type: 'Feature',
      id: index,
      properties: {label: point.label || ''},
      geometry: {type: 'Point', coordinates: [point.lon, point.lat]},
    })),
  };
}

async function init() {
  const element = document.getElementById('small-map');
  const configElement = document.getElementById('small-map-config');
  if (!element || !configElement) return;
  const config = JSON.parse(configElement.textContent);
  const map = createMap(element, config.states_url);
  window.TesseraSmallMap = {map, ready: false};
  // Registered before any await: 'load' may fire while the outlines are still being fetched.
  const loaded = new Promise((resolve) => map.once('load', resolve));
  let outlines = config.outlines || {type: 'FeatureCollection', features: []};
  if (config.outlines_url) {
    const response = await fetch(config.outlines_url, {credentials: 'same-origin'});
    if (response.ok) {
      outlines = await response.json();
    } else {
      element.insertAdjacentHTML('afterend', '<p class="error">The territory outlines could not be loaded.</p>');
    }
  }
  const points = config.points || [];
  await loaded;
  map.addSource('outlines', {type: 'geojson', data: outlines, promoteId: 'id'});
  map.addLayer({
    id: 'outlines-fill',
    type: 'fill',
    source: 'outlines',
    paint: {'fill-color': ['coalesce', ['get', 'color'], '#888888'], 'fill-opacity': 0.35},
  });
  map.addLayer({
    id: 'outlines-line',
    type: 'line',
    source: 'outlines',
    paint: {'line-color': '#1d2430', 'line-width': 1},
  });
  map.addSource('points', {type: 'geojson', data: pointFeatures(points)});
  map.addLayer({
    id: 'points',
    type: 'circle',
    source: 'points',
    paint: {
      'circle-radius': 7,
      'circle-color': '#c2255c',
      'circle-stroke-color': '#ffffff',
      'circle-stroke-width': 2,
    },
  });
  const bounds = boundsOf(outlines.features, points.map((p) => [p.lon, p.lat]));
  if (points.length === 1 && !outlines.features.length) {
    map.jumpTo({center: [points[0].lon, points[0].lat], zoom: 7});
  } else if (bounds) {
    map.fitBounds(bounds, {padding: 24, maxZoom: 9, duration: 0});
  }
  const popup = new maplibregl.Popup({closeButton: false, closeOnClick: false});
  map.on('mousemove', 'outlines-fill', (event) => {
    const props = event.features[0].properties;
    popup.setLngLat(event.lngLat).setText(`${props.code} ${props.name}`).addTo(map);
  });
  map.on('mouseleave', 'outlines-fill', () => popup.remove());
  map.once('idle', () => {
    window.TesseraSmallMap.ready = true;
    element.dataset.ready = 'true';
  });
}

init();
