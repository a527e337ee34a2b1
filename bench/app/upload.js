// Upload service: validates and registers a paper through the DB-access service.
import { call, readBody, serve, upstream } from "./lib.js";

const db = upstream("db-access");

serve("upload", async (req, url, requestId) => {
  if (req.method !== "POST" || url.pathname !== "/upload")
    return { status: 404, body: { error: "not found" } };
  const body = await readBody(req);
  if (typeof body.title !== "string" || body.title.length === 0)
    return { status: 400, body: { error: "title" } };
  const stored = await call(db, "POST", "/papers", requestId, {
    title: body.title.toLowerCase(),
    authors: Array.isArray(body.authors) ? body.authors.map(String) : [],
    pdfBytes: Number(body.pdfBytes ?? 0),
  });
  return { status: 201, body: stored };
});
