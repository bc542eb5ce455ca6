// console/school/students.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  // Poll the exports still being built; swap in the download link when one is done.
  var items = Array.prototype.slice.call(document.querySelectorAll('[data-export]')).filter(function (li) {
    return li.dataset.status === 'pending' || li.dataset.status === 'running';
  });
  function poll() {
    items = items.filter(function (li) {
      fetch(li.dataset.statusUrl, {credentials: 'same-origin'}).then(function (r) { return r.json(); }).then(function (s) {
        var state = li.querySelector('.state');
        li.dataset.status = s.status;
        state.textContent = '';
        if (s.download) {
          state.appendChild(document.createTextNode(s.total + ' 人 · '));
          var a = document.createElement('a'); a.href = s.download; a.textContent = '下载'; state.appendChild(a);
        } else if (s.status === 'failed') {
          state.textContent = '失败';
        } else {
          var p = document.createElement('progress'); p.max = s.total || 1; p.value = s.done; state.appendChild(p);
          state.appendChild(document.createTextNode(' ' + s.done + ' / ' + (s.total || '…') + ' 生成中'));
        }
      });
      return li.dataset.status === 'pending' || li.dataset.status === 'running';
    });
    if (items.length) setTimeout(poll, 1500);
  }
  if (items.length) setTimeout(poll, 1000);
})();
