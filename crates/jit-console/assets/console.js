// JIT Access console: live status badges and copy buttons. Optional: every
// page works without it. Served from this site only (the CSP allows no other).
(function () {
  "use strict";
  function poll() {
    var live = document.querySelectorAll("[data-live]");
    if (!live.length) return;
    var ids = [];
    live.forEach(function (el) { if (ids.indexOf(el.dataset.live) < 0) ids.push(el.dataset.live); });
    fetch("/ui/live?ids=" + encodeURIComponent(ids.slice(0, 20).join(",")), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (statuses) {
        var changedHere = false;
        live.forEach(function (el) {
          var s = statuses[el.dataset.live];
          if (s && s !== el.textContent) {
            el.textContent = s;
            if (el.id === "status") changedHere = true;
          }
        });
        // The detail page's actions depend on the status: show the new ones,
        // unless the person is typing.
        var typing = document.activeElement && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName);
        if (changedHere && !typing) location.reload();
      })
      .catch(function () {})
      .finally(function () { setTimeout(poll, 3000); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    setTimeout(poll, 3000);
    document.querySelectorAll("button.copy").forEach(function (b) {
      b.addEventListener("click", function () {
        var el = document.getElementById(b.dataset.copy);
        if (!el || !navigator.clipboard) return;
        navigator.clipboard.writeText(el.textContent).then(function () {
          var old = b.textContent; b.textContent = "Copied";
          setTimeout(function () { b.textContent = old; }, 1500);
        });
      });
    });
  });
})();
