// Search-as-you-type on the front desk's booking page. Without this file the page works
// the same with the Search button (a plain GET form); with it, the patient list follows the
// typing. A static file, so it runs under the admin's CSP (script-src 'self').
(function () {
  "use strict";
  var form = document.getElementById("patient-search");
  var results = document.getElementById("book-results");
  if (!form || !results || !window.fetch) { return; }
  var input = form.querySelector("input[name=q]");
  var timer = null;
  var latest = 0;
  input.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      var url = form.action.split("?")[0] + "?" + new URLSearchParams(new FormData(form)).toString();
      var ticket = ++latest;
      window.fetch(url, { credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          if (ticket !== latest) { return; }  // an older answer arriving late
          var page = new DOMParser().parseFromString(html, "text/html");
          var fresh = page.getElementById("book-results");
          if (fresh) {
            results.innerHTML = fresh.innerHTML;
            window.history.replaceState(null, "", url);
          }
        });
    }, 250);
  });
})();
