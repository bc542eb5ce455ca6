// h5/my_data.html: withdrawing a consent says what follows and asks first; a copy being built is
// watched until it is ready (no inline script: CSP).
(function () {
  const ui = window.weuiUI;
  for (const form of document.querySelectorAll("form.confirm-form")) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.confirmed === "1") return;
      event.preventDefault();
      ui.dialog("撤回同意", form.dataset.confirm, [
        {label: "取消"},
        {label: "确定撤回", primary: true, action: () => { form.dataset.confirmed = "1"; form.requestSubmit(); }},
      ]);
    });
  }
  // A copy being built: ask its status every few seconds (a minute at most), then show the download.
  const building = document.querySelector('.copy-row[data-status="pending"], .copy-row[data-status="running"]');
  if (building) {
    let tries = 0;
    const poll = async () => {
      tries += 1;
      try {
        const resp = await fetch(building.dataset.statusUrl, {headers: {"Accept": "application/json"}});
        const data = await resp.json();
        if (data.status === "done" || data.status === "failed") return location.reload();
      } catch (e) { /* a weak network: the next try, or the student reloads */ }
      if (tries < 20) setTimeout(poll, 3000);
    };
    setTimeout(poll, 3000);
  }
})();
