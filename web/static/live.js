// The timeline page's scripts (the page works without them):
// - "Load more events" appends the next page in place instead of opening it;
// - the live tail: EventSource on the list's data-live URL. The server answers each request
//   with the events stored since the last one shown (Last-Event-ID) and ends it; the browser
//   reconnects after the server's `retry`. Entries arrive as server-rendered HTML.
(function () {
  "use strict";
  function startLive(list) {
    if (!list.dataset.live || !window.EventSource) { return; }
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

  function loadMore(list, link) {
    link.addEventListener("click", function (event) {
      if (!window.fetch || !window.DOMParser) { return; }
      event.preventDefault();
      link.setAttribute("aria-busy", "true");
      fetch(link.href, { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) { throw new Error(response.status); }
          return response.text();
        })
        .then(function (html) {
          var next = new DOMParser().parseFromString(html, "text/html");
          var items = next.querySelectorAll("#timeline > li");
          for (var i = 0; i < items.length; i++) {
            var item = document.importNode(items[i], true);
            if (item.id && document.getElementById(item.id)) { continue; }
            list.appendChild(item);
            if (window.auditorLocalizeTimes) { window.auditorLocalizeTimes(item); }
          }
          var holder = link.parentNode;
          var more = next.getElementById("load-more");
          var status = next.getElementById("live-status");
          if (more) {
            link.href = more.getAttribute("href");
            link.removeAttribute("aria-busy");
          } else {
            holder.parentNode.replaceChild(
              status ? document.importNode(status, true) : document.createElement("p"), holder);
          }
          var nextList = next.getElementById("timeline");
          if (nextList && nextList.dataset.live) {
            list.dataset.live = nextList.dataset.live;
            startLive(list);
          }
        })
        .catch(function () { window.location.href = link.href; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.getElementById("timeline");
    if (!list) { return; }
    var link = document.getElementById("load-more");
    if (link) { loadMore(list, link); }
    startLive(list);
  });
})();
