/** The page's stylesheet and its one small script, served from /static/ (no external assets). */

export const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{background:#1d2330;color:#fff;padding:8px 16px}header a{color:#fff;font-weight:600;text-decoration:none}
header .src{color:#aab;margin-left:12px;font-size:12px}
main{padding:12px 16px}h1{font-size:18px;margin:8px 0}h2{font-size:15px;margin:16px 0 6px}
form.search{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:end;background:#fff;padding:8px;border:1px solid #dde}
form.search label,form.cursor-form label{display:flex;flex-direction:column;font-size:12px;color:#556}
input{font:13px monospace;padding:3px 5px;min-width:12em}input[name=cuid],input[name=rid]{min-width:23em}button{padding:4px 12px}
table{border-collapse:collapse;background:#fff;margin:6px 0;width:100%}
th,td{border:1px solid #e2e4ea;padding:3px 6px;text-align:left;vertical-align:top;font-size:13px}
td.t,td.cuid,td.rid{font-family:monospace;white-space:nowrap;font-size:12px}td.msg{font-family:monospace;overflow-wrap:anywhere;min-width:18em}
.ctl{color:#b00;background:#fee;font-size:11px}
.c0{background:#e3f0ff}.c1{background:#ffe9d6}.c2{background:#e4f7e4}.c3{background:#f3e5ff}
.c4{background:#fff7c9}.c5{background:#dff7f7}.c6{background:#ffe0ea}.c7{background:#ececec}
svg .bar.c0{fill:#7fb2f0}svg .bar.c1{fill:#f5a25d}svg .bar.c2{fill:#7fcf7f}svg .bar.c3{fill:#b98de6}
svg .bar.c4{fill:#e6cf4f}svg .bar.c5{fill:#6cc7c7}svg .bar.c6{fill:#ee8aa8}svg .bar.c7{fill:#aaa}
svg.timeline{background:#fff;border:1px solid #dde;max-width:100%;height:auto}
svg .lbl{font-size:13px;font-weight:600}svg .sub{font-size:10px;fill:#667;font-family:monospace}
svg .inferred .bar{stroke:#333;stroke-dasharray:5 3;stroke-width:1.5}svg .mark{font-size:11px;fill:#222}
svg .cursor{stroke:#d00;stroke-width:2}
.cursor-form{display:flex;gap:12px;align-items:end;margin:6px 0}#at-slider{min-width:30em}#at-text{min-width:19em}
.answer{background:#fffbe0;border:1px solid #e6d87a;padding:6px 8px}
ol.path{padding-left:0;list-style:none}.hop{margin:8px 0}.hop-head{padding:4px 8px;border:1px solid #ccd}
.hop-head .n{display:inline-block;background:#1d2330;color:#fff;border-radius:10px;padding:0 7px;margin-right:6px}
.pager{margin:8px 0;display:flex;gap:16px}.empty,.note{color:#666}
`;

/** The time cursor: moving the slider moves the red line and names the instance under it; submit asks the server. */
export const JS = `
(() => {
  const svg = document.querySelector("svg.timeline");
  const slider = document.getElementById("at-slider");
  const at = document.getElementById("at-text");
  const live = document.getElementById("at-holder");
  if (!svg || !slider || !at) return;
  const lo = Number(svg.dataset.lo), hi = Number(svg.dataset.hi);
  const left = Number(svg.dataset.left), right = Number(svg.dataset.right);
  const line = document.getElementById("cursor");
  const holders = [...svg.querySelectorAll("g.holder")];
  const show = (t) => {
    const x = left + ((t - lo) / (hi - lo)) * (right - left);
    line.setAttribute("x1", x); line.setAttribute("x2", x);
    const h = holders.find((g) => Number(g.dataset.start) <= t && (g.dataset.end === "" || t < Number(g.dataset.end)));
    live.textContent = h ? "under the cursor: " + h.dataset.cuid : "under the cursor: nobody";
  };
  slider.addEventListener("input", () => { const t = Number(slider.value); at.value = new Date(t).toISOString(); show(t); });
  at.addEventListener("change", () => { const t = Date.parse(at.value); if (!Number.isNaN(t)) { slider.value = String(t); show(t); } });
  if (at.value) show(Date.parse(at.value));
})();
`;
