// console/schools/_copy.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  var button = document.getElementById('copy-invite');
  if (!button) return;
  document.getElementById('invite-link').addEventListener('focus', function (e) { e.target.select(); });
  button.addEventListener('click', function () {
    var field = document.getElementById('invite-link');
    field.select();
    var done = function () { button.textContent = '已复制'; };
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand('copy'); done(); }); }
    else { document.execCommand('copy'); done(); }
  });
})();
