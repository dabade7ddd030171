// The comparison view: two videos in sync (after leads, before follows, muted, with drift
// correction), swipe / split / side-by-side / A-B views, frame steps, stills with zoom, and
// the flicker plot.
"use strict";
(function () {
  const info = JSON.parse(document.getElementById("video-data").textContent);
  const $ = name => document.getElementById(name);
  const lead = $("after"), follow = $("before");
  const stage = $("stage"), divider = $("divider"), paneAfter = $("pane-after");
  const play = $("play"), seek = $("seek"), time = $("time");
  follow.muted = true;
  let mode = "swipe", position = 0.5, showAfter = true, dragging = false, seeking = false;

  // -- views ------------------------------------------------------------------------------
  function layout() {
    stage.className = `stage mode-${mode}`;
    const w = lead.videoWidth || follow.videoWidth, h = lead.videoHeight || follow.videoHeight;
    if (w && h) {
      const aspect = (mode === "side" ? 2 * w : w) / h;
      stage.style.aspectRatio = `${aspect}`;
      stage.style.maxWidth = `calc(68vh * ${aspect.toFixed(4)})`;
    }
    const at = mode === "split" ? 0.5 : position;
    if (mode === "swipe" || mode === "split") {
      paneAfter.style.clipPath = `inset(0 0 0 ${(100 * at).toFixed(2)}%)`;
      divider.style.left = `${(100 * at).toFixed(2)}%`;
      divider.setAttribute("aria-valuenow", Math.round(100 * at));
    } else if (mode === "ab") {
      paneAfter.style.clipPath = showAfter ? "none" : "inset(0 0 0 100%)";
    } else {
      paneAfter.style.clipPath = "none";
    }
    const ab = $("ab-label");
    ab.hidden = mode !== "ab"; ab.textContent = showAfter ? "showing: after" : "showing: before";
    document.querySelectorAll(".mode").forEach(b => b.classList.toggle("active", b.dataset.mode === mode));
  }
  document.querySelectorAll(".mode").forEach(b => b.addEventListener("click", () => {
    mode = b.dataset.mode; layout(); stage.focus(); }));
  function setPosition(p) { position = Math.min(1, Math.max(0, p)); if (mode === "split") mode = "swipe"; layout(); }
  function fromPointer(e) {
    const r = stage.getBoundingClientRect();
    setPosition((e.clientX - r.left) / r.width);
  }
  stage.addEventListener("pointerdown", e => {
    if (mode !== "swipe" && mode !== "split") return;
    dragging = true; stage.setPointerCapture(e.pointerId); fromPointer(e); e.preventDefault(); });
  stage.addEventListener("pointermove", e => { if (dragging) fromPointer(e); });
  stage.addEventListener("pointerup", () => { dragging = false; });
  stage.addEventListener("pointercancel", () => { dragging = false; });

  // -- playback in sync ------------------------------------------------------------------------
  function fps() {
    return info.frames && lead.duration && isFinite(lead.duration) ? info.frames / lead.duration : 25;
  }
  function fmt(t) {
    const m = Math.floor(t / 60), s = t - 60 * m;
    return `${m}:${s.toFixed(2).padStart(5, "0")}`;
  }
  function align() { if (Math.abs(follow.currentTime - lead.currentTime) > 0.001) follow.currentTime = lead.currentTime; }
  function tick() {
    if (!lead.paused && !lead.seeking) {
      const drift = follow.currentTime - lead.currentTime;
      if (Math.abs(drift) > 0.25) { follow.currentTime = lead.currentTime; follow.playbackRate = lead.playbackRate; }
      else if (Math.abs(drift) > 0.005) follow.playbackRate = lead.playbackRate * Math.min(1.5, Math.max(0.5, 1 - 2 * drift));
      else follow.playbackRate = lead.playbackRate;
      if (follow.paused && !follow.ended) follow.play().catch(() => {});
    }
    if (!seeking && lead.duration) seek.value = Math.round(1000 * lead.currentTime / lead.duration);
    time.textContent = fmt(lead.currentTime);
    requestAnimationFrame(tick);
  }
  function start() { Promise.all([lead.play(), follow.play()]).catch(() => {}); }
  function stop() { lead.pause(); follow.pause(); follow.playbackRate = lead.playbackRate; align(); }
  function toggle() { lead.paused ? start() : stop(); }
  lead.addEventListener("loadedmetadata", layout);
  lead.addEventListener("play", () => { play.textContent = "Pause"; });
  lead.addEventListener("pause", () => { play.textContent = "Play"; follow.pause(); align(); });
  lead.addEventListener("ended", () => { follow.pause(); align(); });
  lead.addEventListener("seeked", align);
  lead.addEventListener("ratechange", () => { follow.playbackRate = lead.playbackRate; });
  play.addEventListener("click", toggle);
  seek.addEventListener("input", () => {
    seeking = true;
    if (lead.duration) lead.currentTime = lead.duration * seek.value / 1000;
  });
  seek.addEventListener("change", () => { seeking = false; });
  function step(n) {
    stop();
    const f = fps();
    // land inside the frame, a third of a frame after its start, so both decoders agree
    const index = Math.max(0, Math.round(lead.currentTime * f - 1 / 3) + n);
    const limit = lead.duration ? lead.duration - 0.5 / f : Infinity;
    lead.currentTime = Math.min(limit, (index + 1 / 3) / f);
  }
  $("back").addEventListener("click", () => step(-1));
  $("fwd").addEventListener("click", () => step(1));

  // -- stills ---------------------------------------------------------------------------------
  const panel = $("still-panel"), zoom = $("zoom");
  function applyZoom() {
    // 1x fits the box; each step enlarges the pixels (no smoothing), both sides together
    for (const img of [$("still-before"), $("still-after")]) img.style.width = `${100 * zoom.value}%`;
    $("zoom-value").textContent = `${zoom.value}×`;
  }
  function still() {
    stop();
    const t = lead.currentTime;
    $("still-time").textContent = fmt(t);
    for (const side of ["before", "after"]) {
      const img = $(`still-${side}`);
      img.onload = applyZoom;
      img.onerror = () => { img.alt = `${side}: the still could not be made`; };
      img.src = `${info.base}/still?t=${t.toFixed(6)}&side=${side}`;
    }
    panel.hidden = false;
  }
  $("still").addEventListener("click", still);
  $("still-close").addEventListener("click", () => { panel.hidden = true; });
  zoom.addEventListener("input", applyZoom);
  const boxes = Array.from(document.querySelectorAll(".still-box"));
  boxes.forEach(box => box.addEventListener("scroll", () => {
    for (const other of boxes) if (other !== box) { other.scrollLeft = box.scrollLeft; other.scrollTop = box.scrollTop; }
  }));

  // -- keys -----------------------------------------------------------------------------------
  document.addEventListener("keydown", e => {
    if (e.target.matches("input, select, textarea") && e.target !== seek) return;
    const k = e.key;
    if (k === " " || k === "k") { toggle(); }
    else if (k === "ArrowLeft" || k === "ArrowRight") {
      if (e.target === seek) return;
      const d = (k === "ArrowLeft" ? -1 : 1) * (e.shiftKey ? 0.1 : 0.02);
      if (mode === "split") mode = "swipe";
      if (mode === "swipe") setPosition(position + d);
    }
    else if (k === ",") step(-1);
    else if (k === ".") step(1);
    else if (k === "a" || k === "A") { if (mode !== "ab") mode = "ab"; else showAfter = !showAfter; layout(); }
    else if (k === "s" || k === "S") still();
    else return;
    e.preventDefault();
  });

  // -- flicker plot -------------------------------------------------------------------------
  const plot = $("flicker-plot");
  if (plot) {
    const gains = JSON.parse(plot.dataset.gains);
    const svg = plot.querySelector("svg"), W = 600, H = 220, pad = 28;
    const all = gains.before.concat(gains.after);
    let lo = Math.min(...all), hi = Math.max(...all);
    if (hi - lo < 1e-6) { lo -= 0.01; hi += 0.01; }
    const n = Math.max(2, gains.before.length);
    const x = i => pad + (W - 2 * pad) * i / (n - 1), y = v => H - pad - (H - 2 * pad) * (v - lo) / (hi - lo);
    const ns = "http://www.w3.org/2000/svg";
    const add = (tag, attrs) => { const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); svg.append(e); return e; };
    add("rect", { x: pad, y: pad, width: W - 2 * pad, height: H - 2 * pad, class: "frame" });
    for (const v of [lo, (lo + hi) / 2, hi]) {
      add("line", { x1: pad, x2: W - pad, y1: y(v), y2: y(v), class: "grid" });
      add("text", { x: 2, y: y(v) + 4, class: "tick" }).textContent = v.toFixed(3);
    }
    add("text", { x: W - pad, y: H - 6, class: "tick", "text-anchor": "end" }).textContent = `frame ${n - 1}`;
    add("text", { x: pad, y: H - 6, class: "tick" }).textContent = "frame 0";
    for (const side of ["before", "after"])
      add("polyline", { class: `line ${side}`, points: gains[side].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ") });
  }

  layout();
  requestAnimationFrame(tick);
})();
