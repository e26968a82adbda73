// Live tail of a timeline: EventSource on the list's data-live URL. The server answers each
// request with the events stored since the last one shown (Last-Event-ID) and ends it; the
// browser reconnects after the server's `retry`. Entries arrive as server-rendered HTML.
(function () {
  "use strict";
  function start() {
    var list = document.getElementById("timeline");
    if (!list || !list.dataset.live || !window.EventSource) { return; }
    var status = document.getElementById("live-status");
    var source = new EventSource(list.dataset.live);
    source.addEventListener("entry", function (message) {
      if (document.getElementById("e" + message.lastEventId)) { return; }
      var holder = document.createElement("ol");
      holder.innerHTML = message.data;
      var item = holder.firstElementChild;
      if (!item) { return; }
      item.classList.add("arrived");
      list.appendChild(item);
      if (window.auditorLocalizeTimes) { window.auditorLocalizeTimes(item); }
      if (status) { status.textContent = "Event " + message.lastEventId + " arrived (live)."; }
    });
    source.addEventListener("error", function () {
      // A closed answer is the normal case (the browser reconnects by itself); a refused one
      // (signed out, interaction gone) stops the tail.
      if (source.readyState === EventSource.CLOSED && status) {
        status.textContent = "Live updates stopped; reload the page to resume.";
      }
    });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
