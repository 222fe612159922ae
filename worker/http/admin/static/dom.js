// DOM helpers shared by admin.js and operator.js (loaded before both): data is only ever put in the page with
// textContent / setAttribute (never innerHTML).
"use strict";
window.adminDom = (function () {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) node.append(child);
    return node;
  }
  const td = (text, cls) => el("td", { class: cls, text: text === null || text === undefined ? "" : text });
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  return { el: el, td: td, fmtTime: fmtTime };
})();
