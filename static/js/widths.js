// Bars whose length is data (progress, funnels): the page gives data-width in percent and this
// sets it, since the Content-Security-Policy allows no inline style attributes.
document.querySelectorAll("[data-width]").forEach(function (el) {
  var pct = Math.max(0, Math.min(100, Number(el.dataset.width) || 0));
  el.style.width = pct + "%";
});
