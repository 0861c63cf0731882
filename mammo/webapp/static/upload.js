// Upload page: drag and drop, a server-rendered preview (works for DICOM and TIFF too),
// and a crop rectangle drawn with the mouse whose box (original-image pixels) is sent
// in the hidden "crop" field as "x,y,w,h". Without JavaScript the form still works, uncropped.
// Several files (one exam): no crop or heatmap; per file, a breast and a view select, sent as
// repeated "laterality" and "view" fields in the files' order ("" = auto: the server reads the
// DICOM header or the file name, and is the one that decides).
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("file");
  const zone = document.getElementById("dropzone");
  const panel = document.getElementById("crop-panel");
  const canvas = document.getElementById("crop-canvas");
  const cropField = document.getElementById("crop");
  const cropText = document.getElementById("crop-text");
  const reset = document.getElementById("crop-reset");
  const errorBox = document.getElementById("preview-error");
  const submit = document.getElementById("submit");
  const heatmap = document.getElementById("heatmap");
  const viewsPanel = document.getElementById("views-panel");
  const viewsList = document.getElementById("views-list");
  const maxFiles = parseInt(viewsPanel.dataset.maxFiles, 10) || 8;
  const viewCodes = (viewsPanel.dataset.views || "CC,MLO").split(",");
  const minCrop = parseInt(canvas.dataset.minCrop, 10) || 16;
  const ctx = canvas.getContext("2d");
  let img = null;          // preview image
  let scale = 1;           // original pixels per canvas pixel
  let box = null;          // {x, y, w, h} in canvas pixels
  let start = null;

  function showError(msg) {
    errorBox.textContent = msg;
    errorBox.hidden = !msg;
  }

  function draw() {
    if (!img) return;
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    if (!box) return;
    ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
    ctx.fillRect(0, 0, canvas.width, box.y);
    ctx.fillRect(0, box.y + box.h, canvas.width, canvas.height - box.y - box.h);
    ctx.fillRect(0, box.y, box.x, box.h);
    ctx.fillRect(box.x + box.w, box.y, canvas.width - box.x - box.w, box.h);
    ctx.strokeStyle = "#ffc400";
    ctx.lineWidth = 2;
    ctx.strokeRect(box.x + 1, box.y + 1, Math.max(0, box.w - 2), Math.max(0, box.h - 2));
  }

  function updateField() {
    if (!box) { cropField.value = ""; cropText.textContent = "Whole image"; return; }
    const W = Math.round(canvas.width * scale), H = Math.round(canvas.height * scale);
    const x = Math.max(0, Math.round(box.x * scale)), y = Math.max(0, Math.round(box.y * scale));
    const w = Math.min(W - x, Math.round(box.w * scale)), h = Math.min(H - y, Math.round(box.h * scale));
    if (w < minCrop || h < minCrop) {
      box = null; cropField.value = "";
      cropText.textContent = "Whole image (the box was smaller than " + minCrop + " pixels)";
      draw();
      return;
    }
    cropField.value = [x, y, w, h].join(",");
    cropText.textContent = "Crop: " + w + "×" + h + " pixels at (" + x + ", " + y + ")";
  }

  function canvasPoint(ev) {
    const r = canvas.getBoundingClientRect();
    const px = (ev.clientX - r.left) * canvas.width / r.width;
    const py = (ev.clientY - r.top) * canvas.height / r.height;
    return { x: Math.min(canvas.width, Math.max(0, px)), y: Math.min(canvas.height, Math.max(0, py)) };
  }

  canvas.addEventListener("pointerdown", function (ev) {
    if (!img) return;
    canvas.setPointerCapture(ev.pointerId);
    start = canvasPoint(ev);
    box = { x: start.x, y: start.y, w: 0, h: 0 };
    ev.preventDefault();
  });
  canvas.addEventListener("pointermove", function (ev) {
    if (!start) return;
    const p = canvasPoint(ev);
    box = { x: Math.min(start.x, p.x), y: Math.min(start.y, p.y), w: Math.abs(p.x - start.x), h: Math.abs(p.y - start.y) };
    draw();
  });
  function finish(ev) {
    if (!start) return;
    start = null;
    updateField();
    draw();
  }
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  reset.addEventListener("click", function () { box = null; updateField(); draw(); });

  async function preview(file) {
    img = null; box = null; updateField(); panel.hidden = true; showError("");
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    let body;
    try {
      const resp = await fetch(form.dataset.previewUrl || "/api/preview", { method: "POST", body: data });
      body = await resp.json();
      if (!resp.ok) { showError(body.error || "The image could not be previewed."); return; }
    } catch (e) {
      showError("The preview could not be loaded; you can still submit the image without cropping.");
      return;
    }
    const im = new Image();
    im.onload = function () {
      img = im;
      canvas.width = body.preview_width;
      canvas.height = body.preview_height;
      scale = body.width / body.preview_width;
      // Show small previews (a 224-pixel JPEG) large enough to draw on; CSS max-width keeps it responsive.
      const k = 480 / Math.max(body.preview_width, body.preview_height);
      canvas.style.width = Math.round(body.preview_width * k) + "px";
      panel.hidden = false;
      canvas.dataset.originalWidth = body.width;
      canvas.dataset.originalHeight = body.height;
      draw();
    };
    im.src = body.preview;
  }

  function pick(name, index, text, options) {
    const wrap = document.createElement("span");
    const label = document.createElement("label");
    const sel = document.createElement("select");
    sel.name = name;
    sel.id = name + "-" + index;
    label.htmlFor = sel.id;
    label.textContent = text + " ";
    options.forEach(function (o) {
      const opt = document.createElement("option");
      opt.value = o[0];
      opt.textContent = o[1];
      sel.append(opt);
    });
    wrap.append(label, sel);
    return wrap;
  }

  function showViews(files) {
    viewsList.replaceChildren();
    const several = files.length > 1;
    viewsPanel.hidden = !several;
    heatmap.disabled = several;
    if (several) heatmap.checked = false;
    if (!several) return;
    if (files.length > maxFiles) {
      showError("Choose at most " + maxFiles + " images of one exam (" + files.length + " chosen).");
    }
    Array.from(files).forEach(function (f, i) {
      const set = document.createElement("fieldset");
      set.className = "view-choice";
      const legend = document.createElement("legend");
      legend.textContent = f.name;
      set.append(legend,
        pick("laterality", i, "Breast", [["", "auto"], ["L", "left"], ["R", "right"]]),
        pick("view", i, "View", [["", "auto"]].concat(viewCodes.map(function (v) { return [v, v]; }))));
      viewsList.append(set);
    });
  }

  function chosen(files) {
    if (files.length > 1) {
      preview(null);  // no crop for several files: clears the box and hides the panel
      showViews(files);
    } else {
      showViews(files);
      preview(files[0]);
    }
  }

  input.addEventListener("change", function () { chosen(input.files); });
  ["dragenter", "dragover"].forEach(function (t) {
    zone.addEventListener(t, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    zone.addEventListener(t, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (ev) {
    ev.preventDefault();
    if (ev.dataTransfer && ev.dataTransfer.files.length) {
      input.files = ev.dataTransfer.files;
      chosen(input.files);
    }
  });
  form.addEventListener("submit", function () {
    submit.disabled = true;
    submit.textContent = "Analysing…";
  });
})();
// Coming back with the browser's Back button restores the page from cache: re-enable the button.
window.addEventListener("pageshow", function () {
  const submit = document.getElementById("submit");
  if (submit) { submit.disabled = false; submit.textContent = "Analyse"; }
});
