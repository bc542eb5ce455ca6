// WeUI's feedback components (toast, loading, dialog, top tips) for the H5 pages' scripts, built from
// WeUI's own markup and styles (vendor/weui): one of each on screen at a time, text set with
// textContent (never markup), and no inline script or style attribute, as the policy requires.
(function () {
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const shown = {};
  function replace(kind, node) {
    if (shown[kind]) shown[kind].remove();
    shown[kind] = node;
    if (node) document.body.appendChild(node);
  }
  function toastBox(icon, text) {
    const box = el("div", "xw-toast");
    box.setAttribute("role", "alert");
    box.appendChild(el("div", "weui-mask_transparent"));
    const toast = el("div", "weui-toast");
    toast.appendChild(icon);
    toast.appendChild(el("p", "weui-toast__content", text));
    box.appendChild(toast);
    return box;
  }
  const ui = {
    // A short confirmation ("已完成"), gone after `ms`.
    toast(text, ms) {
      const box = toastBox(el("i", "weui-icon-success-no-circle weui-icon_toast"), text);
      replace("toast", box);
      setTimeout(() => { if (shown.toast === box) replace("toast", null); }, ms || 1800);
    },
    // Something is on its way (a payment being opened); hidden by loading(null).
    loading(text) {
      if (text === null) { replace("toast", null); return; }
      const spinner = el("span", "weui-primary-loading weui-icon_toast");
      spinner.appendChild(el("span", "weui-primary-loading__dot"));
      replace("toast", toastBox(spinner, text || "加载中"));
    },
    // A message the student must read; buttons: [{label, primary, action}]. Resolves with the label pressed.
    dialog(title, text, buttons) {
      return new Promise((resolve) => {
        const box = el("div", "xw-dialog");
        box.setAttribute("role", "dialog");
        box.setAttribute("aria-modal", "true");
        box.appendChild(el("div", "weui-mask"));
        const dialog = el("div", "weui-dialog");
        const head = el("div", "weui-dialog__hd");
        head.appendChild(el("strong", "weui-dialog__title", title));
        dialog.appendChild(head);
        dialog.appendChild(el("div", "weui-dialog__bd", text));
        const foot = el("div", "weui-dialog__ft");
        for (const button of buttons || [{label: "知道了", primary: true}]) {
          const link = el("a", "weui-dialog__btn" + (button.primary ? "" : " weui-dialog__btn_default"), button.label);
          link.href = "#";
          link.setAttribute("role", "button");
          link.addEventListener("click", (event) => {
            event.preventDefault();
            replace("dialog", null);
            if (button.action) button.action();
            resolve(button.label);
          });
          foot.appendChild(link);
        }
        dialog.appendChild(foot);
        box.appendChild(dialog);
        replace("dialog", box);
      });
    },
    // A warning across the top of the page ("网络不稳定"), gone after `ms`.
    toptips(text, ms) {
      const tips = el("div", "weui-toptips weui-toptips_warn", text);
      tips.setAttribute("role", "alert");
      tips.style.display = "block";  // WeUI hides top tips until shown (CSSOM, allowed by the policy)
      replace("toptips", tips);
      setTimeout(() => { if (shown.toptips === tips) replace("toptips", null); }, ms || 3000);
    },
  };
  window.weuiUI = ui;
})();
