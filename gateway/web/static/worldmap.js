// A world map on a canvas for the page's Places view: the land outline of Natural Earth (1:110m,
// land-110m.json, public domain; see land-110m.LICENSE.txt) and photos placed by latitude and
// longitude. Plain JS, no third-party code, no network: the caller fetches the TopoJSON.
//
//   const map = WorldMap.create(canvas, WorldMap.decodeTopology(await (await fetch("/ui/land-110m.json")).json()));
//   map.setPoints([{ lat: 38.71, lon: -9.13, id: 17 }]); map.attach(); map.fitPoints();
//
// Coordinates: a "world" position is x in [0, 1) from 180°W eastwards and y from the top, 1 world
// wide; the equirectangular projection is half as high, Web Mercator square (cut at ±85.05°). The
// map wraps east-west: land and points are drawn once per copy of the world that shows.
"use strict";

(function (root) {
  const MERCATOR_MAX_LAT = 85.0511287798;
  const DEFAULT_STYLE = {
    sea: "#e8eef3", land: "#dcd8cc", coast: "#a39d8d", point: "#c0392b", pointRing: "#ffffff", selected: "#2f5d8a",
  };

  // ---- TopoJSON -------------------------------------------------------------------------------

  // Every ring of every polygon as an array of [lon, lat]. As in gateway/places.py: a step of more
  // than 180° in longitude continues across the antimeridian (so a ring may reach past ±180), and a
  // ring circling a pole (Antarctica) is closed through it; `polar` marks those two added points.
  function decodeTopology(topology) {
    const [sx, sy] = topology.transform.scale, [tx, ty] = topology.transform.translate;
    const arcs = topology.arcs.map((arc) => {
      let x = 0, y = 0;
      return arc.map(([dx, dy]) => { x += dx; y += dy; return [x * sx + tx, y * sy + ty]; });
    });
    const rings = [];
    const polygons = (g) => g.type === "GeometryCollection" ? g.geometries.flatMap(polygons)
      : g.type === "Polygon" ? [g.arcs] : g.type === "MultiPolygon" ? g.arcs : [];
    for (const object of Object.values(topology.objects)) {
      for (const polygon of polygons(object)) {
        for (const ring of polygon) {
          const points = [];
          ring.forEach((i, k) => {
            const arc = i >= 0 ? arcs[i] : arcs[~i].slice().reverse();
            points.push(...(k === 0 ? arc : arc.slice(1)));
          });
          for (let k = 1; k < points.length; k++) {
            const step = ((points[k][0] - points[k - 1][0] + 540) % 360) - 180;
            points[k] = [points[k - 1][0] + step, points[k][1]];
          }
          // the same ring one world over when unwrapping took it west of 180°W
          const west = Math.min(...points.map((q) => q[0]));
          if (west < -180) for (const q of points) q[0] += 360 * Math.ceil((-180 - west) / 360);
          const winding = points[points.length - 1][0] - points[0][0];
          let polar = false;
          if (Math.abs(winding) > 180) {
            const mean = points.reduce((s, p) => s + p[1], 0) / points.length;
            const pole = mean < 0 ? -90 : 90;
            points.push([points[points.length - 1][0], pole], [points[0][0], pole]);
            polar = true;
          }
          rings.push({ points, polar });
        }
      }
    }
    return rings;
  }

  // ---- projections ----------------------------------------------------------------------------

  const PROJECTIONS = {
    equirectangular: {
      height: 0.5,
      y: (lat) => (90 - Math.max(-90, Math.min(90, lat))) / 360,
      lat: (y) => 90 - y * 360,
    },
    mercator: {
      height: 1,
      y: (lat) => {
        const phi = (Math.max(-MERCATOR_MAX_LAT, Math.min(MERCATOR_MAX_LAT, lat)) * Math.PI) / 180;
        return 0.5 - Math.log(Math.tan(Math.PI / 4 + phi / 2)) / (2 * Math.PI);
      },
      lat: (y) => (Math.atan(Math.sinh((0.5 - y) * 2 * Math.PI)) * 180) / Math.PI,
    },
  };

  // ---- the map --------------------------------------------------------------------------------

  // options: projection ("equirectangular" | "mercator"), style (colours, as DEFAULT_STYLE),
  // pointRadius (CSS px), maxZoom, onPointClick(point), onViewChange(view).
  function create(canvas, rings, options = {}) {
    const projection = PROJECTIONS[options.projection || "equirectangular"];
    if (!projection) throw new Error(`unknown projection ${options.projection}`);
    const style = { ...DEFAULT_STYLE, ...(options.style || {}) };
    const maxZoom = options.maxZoom || 256;
    const pointRadius = options.pointRadius || 4;
    const ctx = canvas.getContext("2d");
    let points = [], selected = null, dpr = 1, width = 0, height = 0;
    // view: centre in world units, zoom 1 = the whole world's width fills the canvas
    const view = { x: 0.5, y: projection.height / 2, zoom: 1 };

    // land as Path2D in world units, drawn under a transform: no reprojection on pan or zoom
    const land = new Path2D(), coast = new Path2D();
    let east = 1; // world x of the land's eastmost point (rings may reach past 180°E)
    for (const { points: ring, polar } of rings) {
      const world = ring.map(([lon, lat]) => [(lon + 180) / 360, projection.y(lat)]);
      for (const [x] of world) east = Math.max(east, x);
      world.forEach(([x, y], k) => (k ? land.lineTo(x, y) : land.moveTo(x, y)));
      land.closePath();
      const outline = polar ? world.slice(0, -2) : world.concat([world[0]]); // no line along the pole
      outline.forEach(([x, y], k) => (k ? coast.lineTo(x, y) : coast.moveTo(x, y)));
    }

    const scale = () => width * view.zoom; // CSS px per world unit
    const minZoom = () => 1; // the whole world's width, never less
    const wrap = (x) => x - Math.floor(x);

    function resize() {
      dpr = root.devicePixelRatio || 1;
      width = canvas.clientWidth || canvas.width;
      height = canvas.clientHeight || canvas.height;
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      clamp();
      draw();
    }

    // keep the map's top and bottom from leaving the canvas when it is tall enough to fill it
    function clamp() {
      view.zoom = Math.max(minZoom(), Math.min(maxZoom, view.zoom));
      view.x = wrap(view.x);
      const s = scale(), half = height / 2 / s;
      if (projection.height * s <= height) view.y = projection.height / 2;
      else view.y = Math.max(half, Math.min(projection.height - half, view.y));
    }

    // [x, y] in CSS px of a position, the copy nearest the view's centre
    function project(lat, lon) {
      const s = scale();
      let dx = (lon + 180) / 360 - view.x;
      dx -= Math.round(dx);
      return [width / 2 + dx * s, height / 2 + (projection.y(lat) - view.y) * s];
    }

    // [lat, lon] under a canvas position (CSS px); longitude in [-180, 180)
    function unproject(px, py) {
      const s = scale();
      const x = wrap(view.x + (px - width / 2) / s);
      const y = view.y + (py - height / 2) / s;
      return [projection.lat(Math.max(0, Math.min(projection.height, y))), x * 360 - 180];
    }

    function copies() {
      // world copies (integer offsets) whose land [k, k + east] overlaps the canvas
      const s = scale(), left = view.x - width / 2 / s, right = view.x + width / 2 / s;
      const out = [];
      for (let k = Math.floor(left - east); k <= Math.ceil(right); k++) if (k + east >= left && k <= right) out.push(k);
      return out;
    }

    function draw() {
      if (!width || !height) return;
      const s = scale() * dpr;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = style.sea;
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      for (const k of copies()) {
        ctx.setTransform(s, 0, 0, s, (width / 2 - (view.x - k) * scale()) * dpr, (height / 2 - view.y * scale()) * dpr);
        ctx.fillStyle = style.land;
        ctx.fill(land, "evenodd");
        ctx.strokeStyle = style.coast;
        ctx.lineWidth = 1 / scale();
        ctx.stroke(coast);
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      const r = pointRadius;
      ctx.fillStyle = style.point;
      ctx.strokeStyle = style.pointRing;
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (const p of points) {
        const [x, y] = project(p.lat, p.lon);
        if (x < -r || y < -r || x > width + r || y > height + r) continue;
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
      ctx.fill();
      ctx.stroke();
      if (selected) {
        const [x, y] = project(selected.lat, selected.lon);
        ctx.fillStyle = style.selected;
        ctx.beginPath();
        ctx.arc(x, y, r * 1.6, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      }
      if (options.onViewChange) options.onViewChange(getView());
    }

    // points: [{lat, lon, ...}] (any other fields are kept for the caller); invalid ones are skipped
    function setPoints(list) {
      points = list.filter((p) => Number.isFinite(p.lat) && Number.isFinite(p.lon) && Math.abs(p.lat) <= 90 && Math.abs(p.lon) <= 180);
      draw();
      return points.length;
    }

    // the point nearest a canvas position (CSS px) within `radius` px, else null
    function pointAt(px, py, radius = pointRadius + 4) {
      let best = null, bestD = radius * radius;
      for (const p of points) {
        const [x, y] = project(p.lat, p.lon), d = (x - px) ** 2 + (y - py) ** 2;
        if (d <= bestD) { best = p; bestD = d; }
      }
      return best;
    }

    function select(point) { selected = point; draw(); }

    function panBy(dx, dy) {
      const s = scale();
      view.x -= dx / s;
      view.y -= dy / s;
      clamp();
      draw();
    }

    // zoom by `factor` keeping the position under (px, py) where it is (default: the centre)
    function zoomAt(factor, px = width / 2, py = height / 2) {
      const before = scale();
      const wx = view.x + (px - width / 2) / before, wy = view.y + (py - height / 2) / before;
      view.zoom = Math.max(minZoom(), Math.min(maxZoom, view.zoom * factor));
      const after = scale();
      view.x = wx - (px - width / 2) / after;
      view.y = wy - (py - height / 2) / after;
      clamp();
      draw();
    }

    function centreOn(lat, lon, zoom = view.zoom) {
      view.x = (lon + 180) / 360;
      view.y = projection.y(lat);
      view.zoom = zoom;
      clamp();
      draw();
    }

    // show every point (or the given ones) with `padding` px around; one point: zoom 32 on it
    function fitPoints(list = points, padding = 24) {
      if (!list.length) return;
      // the shortest longitude span: the largest gap between sorted longitudes is left out
      const lons = list.map((p) => (p.lon + 180) / 360).sort((a, b) => a - b);
      let gap = lons[0] + 1 - lons[lons.length - 1], start = lons[0];
      for (let k = 1; k < lons.length; k++) if (lons[k] - lons[k - 1] > gap) { gap = lons[k] - lons[k - 1]; start = lons[k]; }
      const spanX = 1 - gap;
      const ys = list.map((p) => projection.y(p.lat));
      const top = Math.min(...ys), bottom = Math.max(...ys);
      const usableW = Math.max(1, width - 2 * padding), usableH = Math.max(1, height - 2 * padding);
      const sx = spanX > 0 ? usableW / spanX : Infinity, sy = bottom > top ? usableH / (bottom - top) : Infinity;
      const s = Math.min(sx, sy);
      view.zoom = Number.isFinite(s) ? s / width : 32;
      view.x = start + spanX / 2;
      view.y = (top + bottom) / 2;
      clamp();
      draw();
    }

    function getView() {
      const [lat, lon] = unproject(width / 2, height / 2);
      return { lat, lon, zoom: view.zoom };
    }

    // drag to pan, wheel or +/- to zoom, click a point (options.onPointClick); returns a detach
    function attach() {
      let drag = null;
      const local = (e) => { const rect = canvas.getBoundingClientRect(); return [e.clientX - rect.left, e.clientY - rect.top]; };
      const down = (e) => { drag = { x: e.clientX, y: e.clientY, moved: false }; canvas.setPointerCapture?.(e.pointerId); };
      const move = (e) => {
        if (!drag) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
        drag.x = e.clientX; drag.y = e.clientY;
        panBy(dx, dy);
      };
      const up = (e) => {
        const click = drag && !drag.moved;
        drag = null;
        if (click && options.onPointClick) {
          const p = pointAt(...local(e));
          if (p) options.onPointClick(p);
        }
      };
      const wheel = (e) => { e.preventDefault(); zoomAt(Math.exp(-e.deltaY * 0.002), ...local(e)); };
      const key = (e) => {
        if (e.key === "+" || e.key === "=") zoomAt(1.5);
        else if (e.key === "-") zoomAt(1 / 1.5);
        else if (e.key.startsWith("Arrow")) {
          const d = 60;
          panBy(e.key === "ArrowLeft" ? d : e.key === "ArrowRight" ? -d : 0, e.key === "ArrowUp" ? d : e.key === "ArrowDown" ? -d : 0);
        } else return;
        e.preventDefault();
      };
      const resized = () => resize();
      canvas.addEventListener("pointerdown", down);
      canvas.addEventListener("pointermove", move);
      canvas.addEventListener("pointerup", up);
      canvas.addEventListener("wheel", wheel, { passive: false });
      canvas.addEventListener("keydown", key);
      root.addEventListener?.("resize", resized);
      return () => {
        canvas.removeEventListener("pointerdown", down);
        canvas.removeEventListener("pointermove", move);
        canvas.removeEventListener("pointerup", up);
        canvas.removeEventListener("wheel", wheel);
        canvas.removeEventListener("keydown", key);
        root.removeEventListener?.("resize", resized);
      };
    }

    resize();
    return { project, unproject, draw, resize, setPoints, pointAt, select, panBy, zoomAt, centreOn, fitPoints, getView, attach, view };
  }

  root.WorldMap = { decodeTopology, create, PROJECTIONS };
})(typeof window !== "undefined" ? window : globalThis);
