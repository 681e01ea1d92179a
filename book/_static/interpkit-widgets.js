// Loaded before the ipywidgets HTML manager (vendor/embed-amd.js, see _config.yml: nb_ipywidgets_js).
// The core widgets are bundled in embed-amd.js; any other widget module would be fetched from the
// folder named by `data-jupyter-widgets-cdn` (default: https://cdn.jsdelivr.net/npm/). Point it at a
// folder of this book instead, so that a page never asks another host for code (offline, in class).
(function () {
  var script = document.currentScript;
  if (script) {
    script.setAttribute("data-jupyter-widgets-cdn", new URL("vendor/npm/", script.src).href);
  }
})();
