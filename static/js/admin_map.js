/* global ol, MapWidget */
// Django's geometry widget (gis/js/OLMapWidget.js) on the project's own base layers, so the admin
// map needs no internet. A classic script, not a module: it extends the global MapWidget class.
'use strict';

const TESSERA_STATE_STYLE = new ol.style.Style({
    fill: new ol.style.Fill({color: 'rgba(247, 245, 239, 0.9)'}),
    stroke: new ol.style.Stroke({color: '#7a8594', width: 1}),
});
const TESSERA_STATE_OUTLINE_STYLE = new ol.style.Style({
    stroke: new ol.style.Stroke({color: 'rgba(60, 70, 85, 0.8)', width: 1}),
});
const TESSERA_SEA = '#dce6ef';

class TesseraMapWidget extends MapWidget {
    constructor(options) {
        const config = options.tessera || {};
        super(Object.assign({}, options, {base_layer: TesseraMapWidget.baseLayer(config)}));
        const features = this.featureCollection.getArray();
        if (features.length === 1 && features[0].getGeometry().getType() === 'Point') {
            this.map.getView().setZoom(config.point_zoom || 8);
        }
    }

    static baseLayer(config) {
        const layers = [];
        const raster = Boolean(config.basemap_url);
        if (raster) {
            layers.push(new ol.layer.Tile({
                source: new ol.source.XYZ({url: config.basemap_url, attributions: config.basemap_attribution || undefined}),
            }));
        }
        if (config.states_url) {
            layers.push(new ol.layer.Vector({
                source: new ol.source.Vector({url: config.states_url, format: new ol.format.GeoJSON()}),
                // Over a raster basemap only the outlines are drawn, so the basemap stays readable.
                style: raster ? TESSERA_STATE_OUTLINE_STYLE : TESSERA_STATE_STYLE,
                background: raster ? undefined : TESSERA_SEA,
            }));
        }
        return new ol.layer.Group({layers: layers});
    }
}
