// Offline widgets. Loaded before RequireJS and the ipywidgets HTML manager (vendor/require.js,
// vendor/embed-amd.js; see nb_ipywidgets_js in _config.yml and tools/build_book.py).
(function () {
  var script = document.currentScript;
  if (!script) return;
  var vendor = new URL("vendor/", script.src).href;
  // 1. Module URLs resolve inside the vendored folder, not next to the page: the HTML manager loads
  //    its icon fonts relative to its own module URL, and those fonts are vendored there.
  if (typeof window.require === "undefined") window.require = { baseUrl: vendor };
  // 2. The core widgets are bundled in embed-amd.js; any other widget module would be fetched from
  //    the folder named by `data-jupyter-widgets-cdn` (default https://cdn.jsdelivr.net/npm/).
  //    Name a folder of this book instead, so that a page never asks another host for code.
  script.setAttribute("data-jupyter-widgets-cdn", vendor + "npm/");
  // 3. The widgets typeset maths in their labels with the MathJax 2 API (MathJax.Hub.Queue); the
  //    book runs MathJax 3. Route those calls to MathJax 3 once it has loaded (it is deferred).
  function shimMathJax() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return;
    mj.Hub = {
      Queue: function () {
        var elements = [];
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) elements.push(job[2]);
        }
        if (!elements.length) return;
        mj.startup.promise
          .then(function () { return mj.typesetPromise ? mj.typesetPromise(elements) : null; })
          .catch(function (err) { console.warn("MathJax could not typeset a widget label", err); });
      },
    };
  }
  shimMathJax();
  document.addEventListener("DOMContentLoaded", shimMathJax);
})();
