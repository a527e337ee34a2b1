// Search service: finds papers (PDFs) by title through the DB-access service and ranks them.
import { call, serve, upstream } from "./lib.js";

const db = upstream("db-access");

serve("search", async (_req, url, requestId) => {
  if (url.pathname !== "/search") return { status: 404, body: { error: "not found" } };
  const q = url.searchParams.get("q") ?? "";
  const found = await call(db, "GET", `/papers?q=${encodeURIComponent(q)}&limit=20`, requestId);
  const terms = q.toLowerCase().split(/\s+/).filter(Boolean);
  const ranked = found.papers
    .map((p) => ({ ...p, score: terms.reduce((s, t) => s + p.title.split(t).length - 1, 0) + p.year / 1e4 }))
    .sort((a, b) => b.score - a.score)
    .slice(0, 10);
  return { body: { q, total: found.total, results: ranked } };
});
