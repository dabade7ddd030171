// Shared helpers of the nhance-batch pages (no framework, no network beyond this server).
"use strict";
const NB = {
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
    }
    for (const child of children) if (child !== null && child !== undefined)
      node.append(child instanceof Node ? child : String(child));
    return node;
  },
  duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
  },
  when(iso) {
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  },
  baseName(path) { return (path || "").split(/[\\/]/).pop(); },
  progress(doc) {
    const p = doc.status && doc.status.progress;
    if (!p) return { fraction: doc.state === "done" ? 1 : 0, text: "" };
    const fraction = p.frames_total ? p.frames_done / p.frames_total
      : p.chunks_total ? p.chunks_done / p.chunks_total : (doc.state === "done" ? 1 : 0);
    return { fraction: Math.min(1, fraction),
             text: `${p.videos_done}/${p.videos_total} videos, ${p.frames_done}/${p.frames_total} frames` };
  },
  eta(doc) {
    const eta = doc.status && doc.status.eta_seconds;
    return doc.state === "running" && eta ? "ETA " + NB.duration(eta) : "";
  },
  async api(method, url) {
    const response = await fetch(url, { method, credentials: "same-origin" });
    if (!response.ok && response.status !== 204) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return response.status === 204 ? null : response.json();
  },
};
