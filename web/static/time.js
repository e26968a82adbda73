// Times: the server writes UTC; here each <time datetime> is shown in the viewer's time
// zone, with UTC kept in its title (shown on hover). Pages read fine without this script.
(function () {
  "use strict";
  var fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  function localize(root) {
    var times = (root || document).querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) { continue; }
      el.title = el.textContent;  // the UTC text the server wrote
      el.textContent = fmt.format(at);
      el.setAttribute("data-local", "");
    }
  }
  window.auditorLocalizeTimes = localize;
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
})();
