// h5/my_data.html: withdrawing a consent says what follows and asks first (no inline script: CSP).
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
})();
