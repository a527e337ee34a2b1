/**
 * HTML output for the UI: every value that came from a store (log lines, svc names, pod names…) passes through
 * `text()`, which escapes HTML and makes control and bidi-override characters visible (a log line must not be
 * able to inject markup, move the cursor or reorder what the reader sees).
 */

const HTML: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

// C0, DEL, C1, and the Unicode bidi embeddings/overrides/isolates
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Escaped text, safe inside elements and quoted attributes. */
export function text(v: string | number | undefined): string {
  if (v === undefined) return "";
  return String(v)
    .replace(/[&<>"']/g, (c) => HTML[c]!)
    .replace(CONTROL, (c) => {
      const n = c.charCodeAt(0);
      const code =
        n < 0x100 ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`;
      return `<span class="ctl">${code}</span>`;
    });
}

/** A query string from parameters, empty values left out; keys and values URL-encoded. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** An <a> to a path of this UI with query parameters. */
export function link(
  path: string,
  params: Record<string, string | number | undefined>,
  label: string,
): string {
  return `<a href="${text(path + query(params))}">${text(label)}</a>`;
}

/** A whole page: header with the search form, the body, the source in the footer (never credentials). */
export function page(title: string, source: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${text(title)} · ikontainer</title><link rel="stylesheet" href="/static/ui.css"><script src="/static/ui.js" defer></script></head>
<body><header><a class="home" href="/">ikontainer</a> <span class="src" data-testid="source">${text(source)}</span></header>
<main>${body}</main></body></html>`;
}
