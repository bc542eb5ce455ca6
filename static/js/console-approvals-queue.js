// console/approvals/queue.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  var all = document.getElementById('select-all');
  if (!all) return;
  all.addEventListener('change', function () {
    document.querySelectorAll('input[name=profile_id]').forEach(function (box) { box.checked = all.checked; });
  });
})();
