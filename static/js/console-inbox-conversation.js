// console/inbox/conversation.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
// A quick reply fills the box (staff may edit before sending); text is set as a value, never as HTML.
document.querySelectorAll(".quick button[data-body]").forEach(function (b) {
  b.addEventListener("click", function () {
    var box = document.getElementById("reply-text");
    box.value = b.dataset.body; box.focus();
  });
});
var thread = document.getElementById("thread"); thread.scrollTop = thread.scrollHeight;
// Replies on their way: ask every 2 s (for 3 minutes at most) until each is sent or failed.
document.querySelectorAll("[data-reply-status]").forEach(function (badge) {
  var tries = 0;
  function poll() {
    fetch(badge.dataset.replyStatus, {headers: {"Accept": "application/json"}}).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (s) {
      if (s && s.status === "failed") { location.reload(); return; }
      if (s) { badge.textContent = s.label; badge.className = "badge " + s.badge; }
      if ((!s || s.status === "queued" || s.status === "sending") && ++tries < 90) setTimeout(poll, 2000);
    }).catch(function () { if (++tries < 90) setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
});
