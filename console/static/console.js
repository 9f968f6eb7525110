// Live regions: the server pushes a fragment (Server-Sent Events) whenever it changes.
"use strict";
(function () {
  const region = document.getElementById("live-region");
  if (!region || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const source = new EventSource(region.dataset.liveUrl);
  window.consoleLoadedAt = window.consoleLoadedAt || Date.now();
  source.addEventListener("fragment", function (e) {
    region.innerHTML = JSON.parse(e.data).html;
    region.dataset.updates = String(Number(region.dataset.updates || "0") + 1);
    if (status) { status.textContent = status.dataset.online; status.classList.remove("offline"); }
  });
  source.addEventListener("signin", function (e) {
    source.close();
    const expired = JSON.parse(e.data || "{}").expired ? "expired=1&" : "";
    window.location.assign("/ui/signin?" + expired + "next=" + encodeURIComponent(window.location.pathname));
  });
  source.onerror = function () {
    if (status) { status.textContent = status.dataset.offline; status.classList.add("offline"); }
  };
  source.onopen = function () {
    if (status) { status.textContent = status.dataset.online; status.classList.remove("offline"); }
  };
})();
