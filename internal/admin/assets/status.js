// rserpool status pages: refresh the page's content in place every
// data-refresh seconds (not while the tab is hidden), keeping the scroll
// position; the checkbox turns it off, and the choice is remembered.
(function () {
  "use strict";
  var secs = parseInt(document.body.getAttribute("data-refresh"), 10) || 5;
  var box = document.getElementById("autorefresh");
  var key = "rserpool.autorefresh";
  var refreshed = 0;
  try { if (localStorage.getItem(key) === "off") { box.checked = false; } } catch (e) {}
  box.addEventListener("change", function () {
    try { localStorage.setItem(key, box.checked ? "on" : "off"); } catch (e) {}
  });
  function swap(doc, id) {
    var fresh = doc.getElementById(id), old = document.getElementById(id);
    if (fresh && old) { old.replaceWith(fresh); }
  }
  function tick() {
    if (!box.checked || document.hidden) { setTimeout(tick, secs * 1000); return; }
    fetch(location.href, { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.text();
    }).then(function (text) {
      var doc = new DOMParser().parseFromString(text, "text/html");
      swap(doc, "content");
      swap(doc, "stamp");
      document.body.classList.remove("unreachable");
      document.body.setAttribute("data-refreshed", String(++refreshed));
    }).catch(function () {
      document.body.classList.add("unreachable");
    }).finally(function () { setTimeout(tick, secs * 1000); });
  }
  setTimeout(tick, secs * 1000);
})();
