// The reportd viewer: shows an image through POST /preview and streams a
// report from POST /report?stream=1 (server-sent events read with fetch, as
// EventSource cannot POST). No dependencies, no build step.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    file: null,        // the File being looked at
    window: "file",    // the ?window= value of the preview and the report
    previewSeq: 0,     // drops the answers of superseded previews
    previewURL: null,  // the blob: URL shown, revoked when replaced
    controller: null,  // AbortController of the running report
  };

  const pieceCount = (n) => n + (n === 1 ? " piece" : " pieces");

  function setStatus(kind, text) {
    const s = $("status");
    s.dataset.state = kind;
    s.textContent = text;
  }

  function setRunning(running) {
    $("start").disabled = running || !state.file;
    $("cancel").disabled = !running;
  }

  // errorText reads a JSON error answer ({"error", "status"}).
  async function errorText(resp) {
    try {
      const j = await resp.json();
      return j.error + (j.status ? " (" + j.status + ")" : "");
    } catch (e) {
      return "HTTP " + resp.status;
    }
  }

  async function showPreview() {
    if (!state.file) {
      return;
    }
    const seq = ++state.previewSeq;
    const img = $("preview");
    img.dataset.state = "loading";
    $("imginfo").textContent = "Rendering " + state.file.name + "…";
    let resp, blob;
    try {
      resp = await fetch("preview?window=" + encodeURIComponent(state.window),
        { method: "POST", body: state.file });
      if (resp.ok) {
        blob = await resp.blob();
      }
    } catch (e) {
      if (seq === state.previewSeq) {
        img.dataset.state = "error";
        $("imginfo").textContent = "Cannot reach the service: " + e.message;
      }
      return;
    }
    if (seq !== state.previewSeq) {
      return;
    }
    if (!resp.ok) {
      img.dataset.state = "error";
      $("imginfo").textContent = "Cannot show " + state.file.name + ": " + await errorText(resp);
      return;
    }
    const source = resp.headers.get("X-Image-Source") || "?";
    const size = resp.headers.get("X-Image-Size") || "?";
    const win = resp.headers.get("X-Window") || "none";
    let text = state.file.name + ": " + source + ", " + size;
    if (source === "DICOM") {
      text += win === "none" ? ", not windowed" : ", window " + win.replace(",", " / ");
      $("windows").classList.remove("inactive");
    } else {
      text += " (window presets apply to DICOM only)";
      $("windows").classList.add("inactive");
    }
    if (state.previewURL) {
      URL.revokeObjectURL(state.previewURL);
    }
    state.previewURL = URL.createObjectURL(blob);
    img.dataset.window = win;
    img.dataset.source = source;
    img.src = state.previewURL;
    $("imginfo").textContent = text;
  }

  function pickFile(file) {
    if (!file) {
      return;
    }
    state.file = file;
    $("report").textContent = "";
    $("report").dataset.pieces = "0";
    if (!state.controller) {
      setStatus("idle", "Ready: " + file.name + ".");
      setRunning(false);
    }
    showPreview();
  }

  function pickWindow(value, button) {
    state.window = value;
    for (const b of document.querySelectorAll("#windows button")) {
      b.classList.toggle("on", b === button);
    }
    showPreview();
  }

  // parseEvent reads one server-sent event block ("event:" and "data:" lines).
  function parseEvent(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) {
        type = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    }
    return { type: type, data: data.length ? JSON.parse(data.join("\n")) : null };
  }

  async function startReport() {
    if (!state.file || state.controller) {
      return;
    }
    const ctl = new AbortController();
    state.controller = ctl;
    setRunning(true);
    const out = $("report");
    out.textContent = "";
    out.dataset.pieces = "0";
    let pieces = 0;
    const params = new URLSearchParams({ stream: "1", window: state.window });
    const max = $("maxtokens").value.trim();
    if (max) {
      params.set("max_tokens", max);
    }
    const question = $("question").value.trim();
    if (question) {
      params.set("question", question);
    }
    setStatus("running", question ? "Answering…" : "Writing the report…");
    try {
      const resp = await fetch("report?" + params, { method: "POST", body: state.file, signal: ctl.signal });
      if (!resp.ok) {
        setStatus("error", "Error: " + await errorText(resp));
        return;
      }
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      let finished = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const ev = parseEvent(buf.slice(0, end));
          buf = buf.slice(end + 2);
          if (ev.type === "piece") {
            out.textContent += ev.data.text;
            out.dataset.pieces = String(++pieces);
            setStatus("running", "Streaming: " + pieceCount(pieces) + "…");
          } else if (ev.type === "done") {
            finished = true;
            if (out.textContent !== ev.data.report) {
              console.warn("the pieces and the final text differ");
              out.textContent = ev.data.report;
            }
            setStatus("done", "Done: " + pieceCount(pieces) + " in " + ev.data.ms + " ms.");
          } else if (ev.type === "error") {
            finished = true;
            setStatus("error", "Error: " + ev.data.error + (ev.data.status ? " (" + ev.data.status + ")" : ""));
          }
        }
      }
      if (!finished) {
        setStatus("error", "The answer ended early.");
      }
    } catch (e) {
      if (ctl.signal.aborted) {
        setStatus("cancelled", "Cancelled after " + pieceCount(pieces) + ".");
      } else {
        setStatus("error", "Request failed: " + e.message);
      }
    } finally {
      state.controller = null;
      setRunning(false);
    }
  }

  function cancelReport() {
    if (state.controller) {
      state.controller.abort();
    }
  }

  async function showModel() {
    try {
      const resp = await fetch("healthz");
      const h = await resp.json();
      $("model").textContent = "model " + h.model + ", library " + h.library;
      if (h.max_tokens > 0) {
        const max = $("maxtokens");
        max.max = String(h.max_tokens);
        if (!(Number(max.value) <= h.max_tokens)) {
          max.value = String(h.max_tokens);
        }
      }
    } catch (e) {
      $("model").textContent = "service unreachable";
    }
  }

  function init() {
    $("file").addEventListener("change", (e) => pickFile(e.target.files[0]));
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      pickFile(e.dataTransfer.files[0]);
    });
    for (const b of document.querySelectorAll("#windows button[data-window]")) {
      b.addEventListener("click", () => pickWindow(b.dataset.window, b));
    }
    $("custom").addEventListener("click", (e) => {
      const c = $("wc").value.trim();
      const w = $("ww").value.trim();
      if (c === "" || w === "" || !(Number(w) >= 1)) {
        $("imginfo").textContent = "A custom window needs a centre and a width of at least 1.";
        return;
      }
      pickWindow(c + "," + w, e.currentTarget);
    });
    const img = $("preview");
    img.addEventListener("load", () => { img.dataset.state = "loaded"; });
    img.addEventListener("error", () => { img.dataset.state = "error"; });
    $("question").addEventListener("input", () => {
      $("start").textContent = $("question").value.trim() ? "Ask" : "Write report";
    });
    $("start").addEventListener("click", startReport);
    $("cancel").addEventListener("click", cancelReport);
    showModel();
    document.body.dataset.ready = "1";
  }

  init();
})();
