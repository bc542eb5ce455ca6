// console/roster/report.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  // Poll the upload while its job runs: show the rows read, reload for the report (or the error) when it ends.
  var box = document.getElementById('upload-state');
  var state = box.querySelector('.state');
  function poll() {
    fetch(box.dataset.statusUrl, {credentials: 'same-origin', cache: 'no-store'}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(function (s) {
      box.dataset.status = s.status;
      if (s.status === 'done' || s.status === 'failed') { window.location.reload(); return; }
      state.textContent = s.status === 'queued' ? '排队中，即将开始处理…' : '正在读取，已读取 ' + s.rows + ' 行…';
      setTimeout(poll, 1000);
    }).catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 800);
})();
