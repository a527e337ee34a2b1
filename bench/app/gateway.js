// Gateway / web service: the only entry point. Makes the x-request-id when the client sent none, and
// propagates it to every service behind it. GET / is the top page (latest papers), GET /search?q= searches,
// POST /upload registers a paper.
import { call, readBody, serve, upstream } from "./lib.js";

const api = upstream("api");

const page = (title, results) =>
  `<!doctype html><html><head><title>${title}</title></head><body><h1>${title}</h1><ul>${results
    .map((p) => `<li>${p.title} (${p.authors.join(", ")}, ${p.year})</li>`)
    .join("")}</ul></body></html>`;

serve(
  "gateway",
  async (req, url, requestId) => {
    if (url.pathname === "/" && req.method === "GET") {
      const r = await call(api, "GET", "/api/search?q=container", requestId);
      return { type: "text/html", body: page("Paper search", r.results) };
    }
    if (url.pathname === "/search" && req.method === "GET") {
      const q = url.searchParams.get("q") ?? "";
      const r = await call(api, "GET", `/api/search?q=${encodeURIComponent(q)}`, requestId);
      return { type: "text/html", body: page(`Results for ${q}`, r.results) };
    }
    if (url.pathname === "/upload" && req.method === "POST") {
      return { status: 201, body: await call(api, "POST", "/api/papers", requestId, await readBody(req)) };
    }
    return { status: 404, body: { error: "not found" } };
  },
  { generateRequestId: true },
);
