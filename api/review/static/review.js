// Verity moderator review: plain JS, no build step. Data goes into the page with textContent only.
"use strict";

(() => {
  const STORAGE_KEY = "verity.moderatorKey";
  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(STORAGE_KEY)}`, ...(options.headers || {}) };
    // credentials "omit": this page never authenticates by cookie.
    const response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
    if (!response.ok) {
      let code = "HTTP_" + response.status;
      let message = response.statusText;
      try {
        const body = await response.json();
        ({ code, message } = body.error);
      } catch (_) {
        /* not our JSON error shape */
      }
      throw new ApiError(response.status, code, message);
    }
    return response;
  }

  const json = async (path, options) => (await api(path, options)).json();
  const fmt = (x, digits = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
  const pct = (x) => `${Math.max(0, Math.min(100, x * 100)).toFixed(1)}%`;

  function when(iso) {
    if (!iso) return "—";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (seconds < 60) return "just now";
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return new Date(iso).toLocaleString();
  }

  function verdictBadge(verdict, status) {
    const text = verdict || status;
    return el("span", { class: `badge v-${String(text).toLowerCase()}`, text });
  }

  // --- sign-in ------------------------------------------------------------------------------------

  function showSignedIn(signedIn) {
    $("sign-in").hidden = signedIn;
    $("content").hidden = !signedIn;
    $("who").hidden = !signedIn;
    const key = sessionStorage.getItem(STORAGE_KEY) || "";
    $("who-key").textContent = key ? `${key.split("_").slice(0, 2).join("_")}_…` : ""; // vrt_<prefix>: not secret
  }

  function signOut(message) {
    sessionStorage.removeItem(STORAGE_KEY);
    showSignedIn(false);
    $("sign-in-error").textContent = message || "";
  }

  async function start(load) {
    $("sign-out").addEventListener("click", () => signOut());
    $("sign-in-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      sessionStorage.setItem(STORAGE_KEY, $("key").value.trim());
      $("key").value = "";
      await run(load);
    });
    if (sessionStorage.getItem(STORAGE_KEY)) await run(load);
    else showSignedIn(false);
  }

  async function run(load) {
    try {
      await load();
      showSignedIn(true);
    } catch (error) {
      if (error.status === 401) signOut("That key is not valid (unknown or revoked).");
      else if (error.status === 403) signOut("That key cannot review: it needs the moderator role.");
      else {
        showSignedIn(true);
        $("content").prepend(el("p", { class: "error card", text: `Could not load: ${error.message}` }));
      }
    }
  }

  // --- calibration (both pages) -------------------------------------------------------------------

  const METRICS = [
    ["auc", "ROC AUC", true],
    ["brier", "Brier", false],
    ["ece", "ECE", false],
    ["tpr_at_target_fpr", "TPR at target FPR", true],
    ["uncertain_rate", "Uncertain rate", false],
  ];

  function renderCalibration(target, summary, jobVersion) {
    target.replaceChildren();
    if (jobVersion !== undefined) {
      target.append(
        el("p", {}, "This verdict was scored under ", el("strong", { text: jobVersion || "no calibration" }), "."),
      );
    }
    const active = summary.active;
    if (!active) {
      target.append(
        el("p", { class: "muted", text: "No calibration is active: thresholds are the model pack's provisional ones." }),
      );
      return;
    }
    const fitted = active.fitted_on || {};
    target.append(
      el(
        "p",
        {},
        "Active: ",
        el("strong", { text: active.version }),
        ` (${active.method || "—"}), activated ${when(active.activated_at)}; fitted on ${fitted.labels ?? "?"} labels ` +
          `(${fitted.FAKE ?? 0} FAKE, ${fitted.REAL ?? 0} REAL).`,
      ),
    );
    const before = (active.held_out && active.held_out.before) || null;
    const after = (active.held_out && active.held_out.after) || null;
    if (!after) return;
    const table = el(
      "table",
      { class: "metrics" },
      el("thead", {}, el("tr", {}, el("th", { text: "Held-out" }), el("th", { text: "Before" }), el("th", { text: "After" }))),
    );
    const body = el("tbody");
    for (const [key, label, higherBetter] of METRICS) {
      const a = after[key];
      const b = before ? before[key] : null;
      const better = b === null || b === undefined || a === undefined ? "" : (higherBetter ? a > b : a < b) ? "up" : a === b ? "" : "down";
      body.append(el("tr", {}, el("td", { text: label }), el("td", { text: fmt(b) }), el("td", { class: better, text: fmt(a) })));
    }
    table.append(body);
    target.append(table);
    target.append(
      el("p", { class: "muted small", text: `${active.held_out.jobs ?? "?"} held-out jobs; before = ${active.held_out.before_version || "uncalibrated"}.` }),
    );
  }

  // --- queue page ---------------------------------------------------------------------------------

  function queueRow(item) {
    const labels = Object.entries(item.labels).map(([label, n]) => `${label} ×${n}`).join(", ");
    return el(
      "tr",
      {},
      el("td", {}, verdictBadge(item.verdict, item.status)),
      el("td", {}, el("a", { href: `/review/jobs/${item.id}`, text: item.filename || item.id })),
      el("td", { class: "num", text: fmt(item.score) }),
      el("td", { text: labels || (item.verdict ? "unlabelled" : "—") }),
      el("td", { text: item.calibration_version || "—" }),
      el("td", { text: when(item.created_at) }),
    );
  }

  async function loadQueue() {
    const queue = await json("/v1/review/queue");
    for (const part of ["uncertain", "recent"]) {
      $(part).replaceChildren(...queue[part].map(queueRow));
      $(`${part}-empty`).hidden = queue[part].length > 0;
    }
    renderCalibration($("calibration"), await json("/v1/review/calibration"));
  }

  // --- job page -----------------------------------------------------------------------------------

  function renderMeta(job, result) {
    $("job-title").textContent = job.filename || `Job ${job.id}`;
    const rows = [
      ["Job", job.id],
      ["Status", job.status === "SUCCEEDED" ? job.status : `${job.status} · ${job.stage} ${Math.round(job.progress * 100)}%`],
      ["Submitted", when(job.created_at)],
      ["Model pack", (result && result.model_pack) || job.model_pack || "—"],
      ["Frames / faces", result ? `${result.frames_sampled} / ${result.faces_found}` : "—"],
    ];
    $("job-meta").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  }

  function renderVerdict(result, job) {
    const target = $("verdict");
    if (!result) {
      const text = job.error ? `${job.error.code}: ${job.error.message}` : "No result yet.";
      target.replaceChildren(verdictBadge(null, job.status), el("p", { class: "muted", text }));
      return;
    }
    target.replaceChildren(
      el("div", { class: "verdict-line" }, verdictBadge(result.verdict), el("span", { class: "score", text: fmt(result.score) })),
      el("p", { class: "muted small", text: `fused by ${result.method}; raw ${fmt(result.raw_score)}` }),
    );
    const scope = result.signals && result.signals.scope;
    if (scope) target.append(el("p", { class: "small", text: `Outside what the pack can judge: ${scope.replaceAll("_", " ")}.` }));
    const { t_low: low, t_high: high } = result.thresholds;
    if (low === null || high === null) return;
    $("scale").hidden = false;
    $("zone-real").style.width = pct(low);
    $("zone-uncertain").style.width = pct(high - low);
    $("zone-fake").style.width = pct(1 - high);
    $("marker").hidden = result.score === null;
    if (result.score !== null) $("marker").style.left = pct(result.score);
    $("thresholds").textContent = `REAL below ${fmt(low, 2)} · UNCERTAIN between · FAKE above ${fmt(high, 2)}`;
  }

  function renderModels(result) {
    const models = Object.entries((result && result.models) || {});
    if (!models.length) {
      $("models").replaceChildren(el("p", { class: "muted", text: "No model scored a face." }));
      return;
    }
    $("models").replaceChildren(
      ...models.map(([name, m]) => {
        const value = m.calibrated ?? m.aggregated;
        const bar = el("div", { class: "bar" }, el("div", { class: "fill" }));
        if (value !== null && value !== undefined) bar.firstChild.style.width = pct(value);
        const detail = m.error
          ? `failed: ${m.error}`
          : `raw ${fmt(m.aggregated)} · calibrated ${fmt(m.calibrated)} · weight ${fmt(m.weight, 2)} · ${m.frames} frames (${m.aggregator})`;
        return el("div", { class: "model" }, el("div", { class: "model-head" }, el("strong", { text: name }), el("span", { class: "num", text: fmt(value) })), bar, el("p", { class: "muted small", text: detail }));
      }),
    );
  }

  function renderTracks(result) {
    const tracks = (result && result.tracks && result.tracks.tracks) || [];
    const worst = result && result.tracks ? result.tracks.worst_track : null;
    $("tracks").replaceChildren(
      ...tracks.map((t) =>
        el(
          "tr",
          { class: String(t.track_id) === String(worst) ? "worst" : "" },
          el("td", { text: `#${t.track_id}${String(t.track_id) === String(worst) ? " (most fake)" : ""}` }),
          el("td", { class: "num", text: (t.detections || []).length }),
          el("td", { class: "num", text: t.frames ?? "—" }),
          el("td", { class: "num", text: fmt(t.score) }),
          el("td", { class: "num", text: fmt(t.raw_fused) }),
        ),
      ),
    );
  }

  function renderOverrides(result) {
    const applied = (result && result.overrides) || [];
    $("overrides").replaceChildren(
      ...(applied.length
        ? applied.map((o) => el("li", {}, el("strong", { text: o.kind }), ` ${fmt(o.before)} → ${fmt(o.after)}: `, o.reason))
        : [el("li", { class: "muted", text: "None: the verdict is the fused score against the thresholds." })]),
    );
  }

  function renderHistory(feedback) {
    $("feedback-history").replaceChildren(
      ...(feedback.length
        ? feedback.map((f) =>
            el(
              "li",
              { class: f.current ? "" : "superseded" },
              verdictBadge(f.label),
              ` ${f.category.replace(/_/g, " ").toLowerCase()} · ${when(f.created_at)}${f.mine ? " · you" : ` · key #${f.moderator_key_id}`}${f.current ? "" : " (superseded)"}`,
              f.note ? el("div", { class: "note", text: f.note }) : "",
            ),
          )
        : [el("li", { class: "muted", text: "No labels yet." })]),
    );
  }

  function suggestedCategory(verdict, label) {
    if (label === "UNKNOWN" || verdict === "UNCERTAIN" || verdict === "NO_FACE" || verdict === "NOT_APPLICABLE") return "OTHER";
    if (verdict === label) return "CONFIRMATION";
    return label === "REAL" ? "FALSE_POSITIVE" : "FALSE_NEGATIVE";
  }

  // An image behind the Bearer header: fetched, then shown from a blob: URL.
  async function loadImage(path, id, what) {
    try {
      $(id).src = URL.createObjectURL(await (await api(path)).blob());
    } catch (error) {
      $(id).hidden = true;
      $(`${id}-note`).hidden = false;
      $(`${id}-note`).textContent = `No ${what}: ${error.message}`;
    }
  }

  // Heatmaps of an explain=true job: each PNG holds the model's crop and, beside it, the heatmap blended in.
  async function loadHeatmaps(jobId) {
    let heatmaps;
    try {
      ({ heatmaps } = await json(`/v1/jobs/${jobId}/heatmaps`));
    } catch (_) {
      return; /* the result is not there yet; the card stays hidden */
    }
    if (!heatmaps.length) return;
    $("heatmaps-card").hidden = false;
    const figures = heatmaps.map((h) => {
      const what = `${h.member} · frame ${h.frame_index} (${fmt(h.timestamp_s, 2)} s) · track #${h.track_id} · P(fake) ${fmt(h.score)}`;
      if (!h.url) return el("figure", { class: "heatmap" }, el("figcaption", { text: `${what} · not explained: ${h.error}` }));
      const img = el("img", { class: "heatmap-img", alt: `${h.member}: crop and heatmap, frame ${h.frame_index}` });
      return el("figure", { class: "heatmap" }, img, el("figcaption", { text: `${what} · ${h.method}` }));
    });
    $("heatmaps").replaceChildren(...figures);
    await Promise.all(
      heatmaps.map(async (h, i) => {
        if (h.url) figures[i].querySelector("img").src = URL.createObjectURL(await (await api(h.url)).blob());
      }),
    );
  }

  function noFrames() {
    $("frames").hidden = true;
    $("frames-note").hidden = false;
    $("frames-note").textContent = "No face was found in the sampled frames.";
  }

  // Each scored face on the image, placed in percent of its size: the boxes follow the image as it scales.
  // Boxes are in the upright image's pixels, as the browser shows it (EXIF orientation applied).
  function drawFaceBoxes(result, img) {
    for (const track of result.tracks.tracks) {
      for (const { box } of track.detections) {
        const face = el("div", { class: "face-box" }, el("span", { text: `#${track.track_id} ${track.score.toFixed(2)}` }));
        face.style.left = `${(100 * box.x1) / img.naturalWidth}%`;
        face.style.top = `${(100 * box.y1) / img.naturalHeight}%`;
        face.style.width = `${(100 * (box.x2 - box.x1)) / img.naturalWidth}%`;
        face.style.height = `${(100 * (box.y2 - box.y1)) / img.naturalHeight}%`;
        $("still-wrap").append(face);
      }
    }
  }

  // Images and animations (GIF, APNG, animated WebP) show in an <img>, which a <video> cannot play.
  async function loadStill(jobId, result) {
    const img = $("still");
    if (!img.getAttribute("src")) {
      $("video").hidden = true;
      $("still-wrap").hidden = false;
      img.src = (await json(`/v1/jobs/${jobId}/video-url`)).url;
    }
    if (result && result.media === "image" && !$("still-wrap").querySelector(".face-box")) {
      $("media-title").textContent = "Image";
      if (!img.complete) await new Promise((resolve) => img.addEventListener("load", resolve, { once: true }));
      drawFaceBoxes(result, img);
    }
  }

  async function loadMedia(jobId, result, job) {
    const video = $("video");
    if (job.params.sampling === "stream") {
      // A live stream keeps no video: its frames were scored as they came (see "Stream decisions").
      video.hidden = true;
      $("video-note").hidden = false;
      $("video-note").textContent = "A live stream: its frames were scored as they came, and no video is stored.";
      if (result && !$("timeline").getAttribute("src")) {
        $("frames").hidden = true;
        $("frames-note").hidden = false;
        $("frames-note").textContent = "A live stream keeps no frames: the per-frame timeline shows their scores.";
        await loadImage(`/v1/jobs/${jobId}/timeline.png`, "timeline", "timeline");
      }
      return;
    }
    if ((job.content_type || "").startsWith("image/")) {
      await loadStill(jobId, result);
    } else if (!video.getAttribute("src")) {
      const { url } = await json(`/v1/jobs/${jobId}/video-url`);
      video.onerror = () => {
        const codec = (result && result.video && result.video.codec) || "this codec";
        video.hidden = true;
        $("video-note").hidden = false;
        $("video-note").replaceChildren(
          `This browser cannot play ${codec} video; the sampled frames below show what was scored. `,
          el("a", { href: url, download: "", text: "Download the original" }),
        );
      };
      video.src = url;
    }
    if (!result || $("timeline").getAttribute("src")) return;
    await Promise.all([
      loadImage(`/v1/jobs/${jobId}/timeline.png`, "timeline", "timeline"),
      result.faces_found ? loadImage(`/v1/jobs/${jobId}/frames.jpg`, "frames", "frames") : noFrames(),
      loadHeatmaps(jobId),
    ]);
  }

  // A live stream's decision over time: its score per scored frame (P(fake) on a logit axis, where the thresholds
  // near 1 stay apart), t_low and t_high, and a mark with the new verdict at each decision change.
  function renderStream(stream) {
    if (!stream || !stream.frames.length) return;
    $("stream-card").hidden = false;
    const svg = $("stream-timeline");
    const ns = "http://www.w3.org/2000/svg";
    const shape = (tag, attrs, text) => {
      const node = document.createElementNS(ns, tag);
      for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
      if (text) node.textContent = text;
      svg.append(node);
    };
    const logit = (p) => Math.log(Math.min(Math.max(p, 1e-6), 1 - 1e-6) / (1 - Math.min(Math.max(p, 1e-6), 1 - 1e-6)));
    const scored = stream.frames.filter((f) => f.score !== null);
    const values = [...scored.map((f) => logit(f.score)), ...[stream.t_low, stream.t_high].filter((t) => t !== null).map(logit)];
    const lo = Math.min(...values, 0) - 0.5, hi = Math.max(...values, 0) + 0.5;
    const t0 = stream.frames[0].t, t1 = Math.max(stream.frames[stream.frames.length - 1].t, t0 + 1);
    const x = (t) => 40 + ((t - t0) / (t1 - t0)) * 550;
    const y = (p) => 190 - ((logit(p) - lo) / (hi - lo)) * 180;
    svg.replaceChildren();
    for (const [name, t] of [["t_low", stream.t_low], ["t_high", stream.t_high]]) {
      if (t === null) continue;
      shape("line", { x1: 40, x2: 590, y1: y(t), y2: y(t), class: `threshold ${name}` });
      shape("text", { x: 2, y: y(t) - 4, class: "axis" }, `${name} ${t.toFixed(2)}`);
    }
    if (scored.length) {
      shape("polyline", { points: scored.map((f) => `${x(f.t)},${y(f.score)}`).join(" "), class: "score" });
    }
    const changes = stream.frames.filter((f) => f.changed);
    for (const f of changes) {
      shape("circle", { cx: x(f.t), cy: y(f.score ?? 0.5), r: 5, class: `change ${(f.verdict || "").toLowerCase()}` });
    }
    $("stream-changes").replaceChildren(
      ...changes.map((f) => {
        const score = f.score === null ? "none" : f.score.toFixed(3);
        return el("li", { text: `t=${f.t.toFixed(1)} s (frame ${f.seq}): ${f.verdict} · score ${score}` });
      }),
    );
  }

  async function loadJob() {
    const jobId = document.body.dataset.jobId;
    const data = await json(`/v1/review/jobs/${encodeURIComponent(jobId)}`);
    const { job, result, feedback } = data;
    renderMeta(job, result);
    renderVerdict(result, job);
    renderModels(result);
    renderTracks(result);
    renderOverrides(result);
    renderHistory(feedback);
    renderStream(data.stream);
    const form = $("feedback-form");
    for (const button of form.querySelectorAll("button")) button.disabled = job.status !== "SUCCEEDED";
    if (job.status !== "SUCCEEDED") $("feedback-status").textContent = "Labels can be given once the job has succeeded.";
    form.onsubmit = async (event) => {
      event.preventDefault();
      const label = event.submitter.dataset.label;
      const body = {
        label,
        category: $("category").value || suggestedCategory(result && result.verdict, label),
        note: $("note").value.trim() || null,
      };
      const status = $("feedback-status");
      try {
        const saved = await json(`/v1/jobs/${jobId}/feedback`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        status.className = "small ok";
        status.textContent = `Saved: ${saved.label} (${saved.category.replace(/_/g, " ").toLowerCase()}).`;
        $("note").value = "";
        renderHistory((await json(`/v1/review/jobs/${jobId}`)).feedback);
      } catch (error) {
        status.className = "small error";
        status.textContent = `Not saved: ${error.message}`;
      }
    };
    const summary = await json("/v1/review/calibration");
    renderCalibration($("calibration"), summary, result ? result.calibration_version : null);
    await loadMedia(jobId, result, job);
    if (["QUEUED", "RUNNING"].includes(job.status)) setTimeout(() => run(loadJob), 2000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    start(page === "job" ? loadJob : loadQueue);
  });
})();
