// console/lectures/topic.html: a resumable lecture upload in chunks, then the version's processing, polled.
// Loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  var box = document.getElementById('uploader');
  var form = document.getElementById('upload-form');
  var input = document.getElementById('upload-file');
  var button = document.getElementById('upload-start');
  var bar = document.getElementById('upload-bar');
  var text = document.getElementById('upload-text');
  var problem = document.getElementById('upload-error');
  var token = document.querySelector('meta[name="csrf-token"]').content;
  var PARALLEL = 3;      // chunks in flight at once
  var RETRIES = 8;       // a chunk is tried this often (with a growing pause) before the upload stops

  function show(message) { text.textContent = message; }
  function fail(message) {
    problem.textContent = message; problem.hidden = false; button.disabled = false;
  }
  function remembered(file) { return 'xinwei-lecture:' + box.dataset.startUrl + ':' + file.name + ':' + file.size; }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function api(url, options) {
    options = options || {};
    options.credentials = 'same-origin';
    options.headers = Object.assign({'X-CSRF-Token': token}, options.headers || {});
    return fetch(url, options).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) { var e = new Error(body.message || ('HTTP ' + r.status)); e.status = r.status; throw e; }
        return body;
      });
    });
  }

  async function sendChunk(state, file, index) {
    var start = index * state.chunk_bytes;
    var blob = file.slice(start, Math.min(start + state.chunk_bytes, file.size));
    for (var attempt = 1; ; attempt++) {
      try {
        return await api(state.chunk_url + index, {method: 'PUT', body: blob,
                                                  headers: {'Content-Type': 'application/octet-stream'}});
      } catch (e) {
        // A refusal (4xx) will not change on retry; a dropped connection or a 5xx may.
        if ((e.status && e.status < 500) || attempt >= RETRIES) throw e;
        show('网络不稳定，正在重试第 ' + index + ' 块…');
        await sleep(Math.min(30000, 1000 * Math.pow(2, attempt)));
      }
    }
  }

  async function upload(file) {
    var key = remembered(file), state = null;
    var saved = localStorage.getItem(key);
    if (saved) {
      try { state = await api(saved); } catch (e) { state = null; }
      if (state && state.complete) state = null;
    }
    if (!state) {
      state = await api(box.dataset.startUrl, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                               body: JSON.stringify({file_name: file.name, size: file.size})});
      localStorage.setItem(key, state.state_url);
    }
    var done = new Set(state.received), queue = [];
    for (var i = 0; i < state.chunks; i++) if (!done.has(i)) queue.push(i);
    if (done.size) show('从断点继续：已上传 ' + done.size + ' / ' + state.chunks + ' 块');
    function progress() {
      bar.value = Math.round(100 * done.size / state.chunks);
      show('已上传 ' + Math.round(100 * done.size / state.chunks) + '%（' + done.size + ' / ' + state.chunks + ' 块）');
    }
    async function worker() {
      while (queue.length) {
        var index = queue.shift();
        await sendChunk(state, file, index);
        done.add(index);
        progress();
      }
    }
    var workers = [];
    for (var w = 0; w < PARALLEL; w++) workers.push(worker());
    await Promise.all(workers);
    var version = await api(state.complete_url, {method: 'POST'});
    localStorage.removeItem(key);
    return version;
  }

  async function follow(versionId) {
    var url = box.dataset.statePrefix + versionId;
    for (;;) {
      var s = await api(url);
      if (s.status === 'ready' || s.status === 'failed') { window.location.reload(); return; }
      if (s.status === 'transcoding' && s.seconds) {
        bar.value = Math.round(100 * s.progress / s.seconds);
        show('转码中 ' + bar.value + '%（' + Math.round(s.progress) + ' / ' + Math.round(s.seconds) + ' 秒）');
      } else {
        show(s.label + '…');
      }
      await sleep(2000);
    }
  }

  form.addEventListener('submit', async function (event) {
    event.preventDefault();
    var file = input.files[0];
    if (!file) return;
    problem.hidden = true;
    button.disabled = true;
    document.getElementById('upload-progress').hidden = false;
    try {
      var version = await upload(file);
      show('上传完成，正在检查文件…');
      await follow(version.version_id);
    } catch (e) {
      fail(e.message || '上传失败，请稍后重试。');
    }
  });
})();
