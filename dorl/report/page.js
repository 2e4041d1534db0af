// report.html's code: html.py inlines it and the page's CSP allows it by its sha256 (no other script runs).
// Dataset text reaches the page only through textContent: it is never parsed as HTML.
"use strict";
const DATA = JSON.parse(document.getElementById("dorl-data").textContent);
const PAGE = 20;
const fmt = v => v === null || v === undefined ? "–" : v.toFixed(3);  // null: a score that was not a number
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function contextCell(turns) {
  const td = el("td");
  const last = turns.slice(-3), earlier = turns.slice(0, -3);
  if (earlier.length) {
    const d = el("details");
    d.appendChild(el("summary", null, earlier.length + " earlier turn(s)"));
    earlier.forEach(t => d.appendChild(el("p", "turn " + t[0], t[0] + ": " + t[1])));
    td.appendChild(d);
  }
  last.forEach(t => td.appendChild(el("p", "turn " + t[0], t[0] + ": " + t[1])));
  return td;
}
function render(section) {
  const d = DATA[section.dataset.dataset], st = section.state;
  const q = st.filter.toLowerCase();
  let rows = d.rows.filter(r => !q || JSON.stringify([r.context, r.human, r.methods]).toLowerCase().includes(q));
  const key = st.sort;
  const val = r => (key === "spread" ? r.spread : r.methods[key].scores[d.primary]) ?? -Infinity;
  if (key !== "order") rows = rows.slice().sort((a, b) => st.dir * ((val(b) > val(a)) - (val(b) < val(a))));
  st.pages = Math.max(1, Math.ceil(rows.length / PAGE));
  st.page = Math.min(st.page, st.pages - 1);
  const tbody = section.querySelector("tbody");
  tbody.replaceChildren();
  rows.slice(st.page * PAGE, (st.page + 1) * PAGE).forEach(r => {
    const tr = el("tr", "example");
    tr.appendChild(el("td", null, r.id));
    tr.appendChild(contextCell(r.context));
    tr.appendChild(el("td", null, r.human));
    const best = d.primary ? Math.max(...d.methods.map(m => r.methods[m].scores[d.primary])) : null;
    d.methods.forEach(m => {
      const c = r.methods[m], td = el("td", d.primary && c.scores[d.primary] === best ? "top" : null);
      td.appendChild(el("div", "response", c.response));
      td.appendChild(el("div", "score", d.metrics.map(x => x + " " + fmt(c.scores[x])).join(" · ")));
      tr.appendChild(td);
    });
    tr.appendChild(el("td", null, r.spread === undefined ? "" : fmt(r.spread)));
    tbody.appendChild(tr);
  });
  section.querySelector(".count").textContent =
    rows.length + " of " + d.rows.length + " examples · page " + (st.page + 1) + " of " + st.pages;
}
document.querySelectorAll("section.dataset").forEach(section => {
  const d = DATA[section.dataset.dataset];
  section.state = {filter: "", sort: d.primary ? "spread" : "order", dir: 1, page: 0, pages: 1};
  const controls = el("div", "controls");
  const filter = el("input"); filter.type = "search"; filter.placeholder = "filter (any text)";
  filter.addEventListener("input", () => {
    section.state.filter = filter.value; section.state.page = 0; render(section);
  });
  const sort = el("select");
  [["spread", "methods disagree most (" + (d.primary || "") + " spread)"], ["order", "test sample order"]]
    .concat(d.primary ? d.methods.map(m => [m, m + "'s " + d.primary]) : [])
    .forEach(([v, t]) => { const o = el("option", null, t); o.value = v; sort.appendChild(o); });
  sort.value = section.state.sort;
  sort.addEventListener("change", () => { section.state.sort = sort.value; render(section); });
  const dir = el("button", null, "reverse");
  dir.addEventListener("click", () => { section.state.dir *= -1; render(section); });
  const prev = el("button", null, "◀"), next = el("button", null, "▶");
  prev.addEventListener("click", () => { section.state.page = Math.max(0, section.state.page - 1); render(section); });
  next.addEventListener("click", () => { section.state.page = Math.min(section.state.pages - 1, section.state.page + 1); render(section); });
  controls.append(filter, el("span", null, "sort by"), sort, dir, prev, next, el("span", "count"));
  section.appendChild(controls);
  const table = el("table", "examples"), head = el("tr");
  head.append(el("th", null, "example"), el("th", null, "context"), el("th", null, "human response"));
  d.methods.forEach(m => {
    const th = el("th", d.primary ? "sortable" : null, m);
    th.title = "sort by " + m + "'s " + d.primary;
    if (d.primary) th.addEventListener("click", () => { section.state.sort = m; sort.value = m; render(section); });
    head.appendChild(th);
  });
  const sp = el("th", "sortable", "spread");
  sp.addEventListener("click", () => { section.state.sort = "spread"; sort.value = "spread"; render(section); });
  head.appendChild(sp);
  const thead = el("thead"); thead.appendChild(head);
  table.append(thead, el("tbody"));
  section.appendChild(table);
  render(section);
});
document.body.dataset.rendered = "1";
