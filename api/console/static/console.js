// The console's only script: progressive enhancement, nothing depends on it.
(function () {
  "use strict";
  // The account context lives in the page, not in the URL or the session: once a page has
  // been drawn for the chosen context, drop ?context= from the address bar, so a reload
  // goes back to the personal account (API.md, "The console").
  var url = new URL(window.location.href);
  if (document.body.hasAttribute("data-context-page") && url.searchParams.has("context")) {
    url.searchParams.delete("context");
    window.history.replaceState(null, "", url.pathname + (url.search || "") + url.hash);
  }
  // Ask before destructive actions (remove, revoke, delete, leave).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
  // Move focus to the first field with an error, or to the page's alert, so keyboard and
  // screen-reader users land on what needs attention.
  window.addEventListener("DOMContentLoaded", function () {
    var invalid = document.querySelector("[aria-invalid=true]");
    if (invalid) { invalid.focus(); return; }
    var alert = document.querySelector("main .alert");
    if (alert) { alert.setAttribute("tabindex", "-1"); alert.focus(); }
  });
})();
