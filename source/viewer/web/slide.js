/*
 * The slide page of a viewer site (source/viewer/pages.py writes the page and its inline data).
 *
 * OpenSeadragon shows the slide's Deep Zoom pyramid (an inline tile source: nothing is fetched but images) and one
 * small image per overlay layer, placed in the slide's viewport coordinates and drawn without smoothing. The page
 * exposes window.viewerState: ready, layers, regions, regionCenter(row) and showOnly(name).
 */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("slide-data").textContent);
  const box = data.box;
  const items = {};
  const info = document.getElementById("region-info");
  const pinned = document.getElementById("region-link");

  const viewer = OpenSeadragon({
    id: "viewer",
    prefixUrl: "../../assets/openseadragon/images/",
    tileSources: data.tile_source,
    drawer: "canvas",
    imageSmoothingEnabled: false,
    crossOriginPolicy: false,
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.2,
    gestureSettingsMouse: { clickToZoom: false },
  });

  const state = {
    ready: false,
    layers: data.layers.map((layer) => layer.name),
    regions: data.regions,
    regionCenter: regionCenter,
    showOnly: showOnly,
  };
  window.viewerState = state;

  function control(kind, name) {
    return document.querySelector(`input[${kind}="${CSS.escape(name)}"]`);
  }

  function loaded(item) {
    return new Promise((resolve) => item.whenFullyLoaded(resolve));
  }

  function drawn(list) {
    state.ready = false;
    return Promise.all(list.map(loaded)).then(
      () =>
        new Promise((resolve) => {
          viewer.forceRedraw();
          requestAnimationFrame(() =>
            requestAnimationFrame(() => {
              state.ready = true;
              resolve();
            })
          );
        })
    );
  }

  function apply(name) {
    const checkbox = control("data-layer", name);
    const slider = control("data-layer-opacity", name);
    items[name].setOpacity(checkbox.checked ? parseFloat(slider.value) : 0);
  }

  function showOnly(name) {
    if (name !== null && !state.layers.includes(name)) {
      throw new Error(`no layer '${name}'; the layers are ${state.layers.join(", ")}`);
    }
    for (const layer of state.layers) {
      control("data-layer", layer).checked = layer === name;
      if (layer === name) {
        control("data-layer-opacity", layer).value = "1";
      }
      apply(layer);
    }
    return drawn([items.slide].concat(name === null ? [] : [items[name]]));
  }

  function regionCenter(row) {
    const region = data.regions[row];
    const point = new OpenSeadragon.Point(
      region.x - box.x + region.width / 2,
      region.y - box.y + region.height / 2
    );
    const onElement = items.slide.imageToViewerElementCoordinates(point);
    const rect = viewer.element.getBoundingClientRect();
    return { x: rect.left + window.scrollX + onElement.x, y: rect.top + window.scrollY + onElement.y };
  }

  function addLayer(index) {
    if (index === data.layers.length) {
      const visible = data.layers.filter((layer) => layer.visible).map((layer) => items[layer.name]);
      drawn([items.slide].concat(visible));
      return;
    }
    const layer = data.layers[index];
    viewer.addTiledImage({
      tileSource: { type: "image", url: layer.url, buildPyramid: false },
      x: (layer.box.x - box.x) / box.width,
      y: (layer.box.y - box.y) / box.width,
      width: layer.box.width / box.width,
      opacity: layer.visible ? layer.opacity : 0,
      preload: true,
      success: (event) => {
        items[layer.name] = event.item;
        control("data-layer", layer.name).addEventListener("change", () => apply(layer.name));
        control("data-layer-opacity", layer.name).addEventListener("input", () => apply(layer.name));
        addLayer(index + 1);
      },
      error: (event) => {
        info.textContent = `layer ${layer.name} could not be loaded: ${event.message}`;
      },
    });
  }

  viewer.addOnceHandler("open", () => {
    items.slide = viewer.world.getItemAt(0);
    addLayer(0);
  });

  function regionAt(x, y) {
    for (let index = data.regions.length - 1; index >= 0; index -= 1) {
      const region = data.regions[index];
      if (x >= region.x && x < region.x + region.width && y >= region.y && y < region.y + region.height) {
        return region;
      }
    }
    return null;
  }

  function describe(region, x, y) {
    const lines = [`row ${region.row}, x ${region.x}, y ${region.y}`];
    for (const name of state.layers) {
      if (!control("data-layer", name).checked) {
        continue;
      }
      if (region.values[name] !== undefined) {
        lines.push(`${name} ${region.values[name].toPrecision(4)}`);
      } else if (region.patches && region.patches[name]) {
        const grid = region.patches[name].length;
        const row = Math.min(grid - 1, Math.floor(((y - region.y) / region.height) * grid));
        const col = Math.min(grid - 1, Math.floor(((x - region.x) / region.width) * grid));
        const value = region.patches[name][row][col];
        if (value !== null) {
          lines.push(`${name} ${value.toPrecision(4)} (patch ${row}, ${col})`);
        }
      }
    }
    return lines.join("\n");
  }

  function topRegionLink(region) {
    const link = document.createElement("a");
    link.href = region.top_region;
    link.target = "_blank";
    link.textContent = `top-region image of row ${region.row}`;
    return link;
  }

  function show(clientX, clientY, clicked) {
    if (!items.slide) {
      return;
    }
    const rect = viewer.element.getBoundingClientRect();
    const onElement = new OpenSeadragon.Point(clientX - rect.left, clientY - rect.top);
    const image = items.slide.viewerElementToImageCoordinates(onElement);
    const x = image.x + box.x;
    const y = image.y + box.y;
    const region = regionAt(x, y);
    if (region === null) {
      info.textContent = "";
      info.removeAttribute("data-row");
      return;
    }
    info.textContent = describe(region, x, y);
    info.dataset.row = String(region.row);
    if (clicked) {
      pinned.replaceChildren();
      if (region.top_region) {
        info.append("\n", topRegionLink(region));
        pinned.append(topRegionLink(region));
      }
    }
  }

  viewer.element.addEventListener("pointermove", (event) => show(event.clientX, event.clientY, false), true);
  viewer.addHandler("canvas-click", (event) => {
    if (event.quick) {
      show(event.originalEvent.clientX, event.originalEvent.clientY, true);
    }
  });
})();
