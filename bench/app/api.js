// API service: forwards requests straight to the backend services.
import { call, readBody, serve, upstream } from "./lib.js";

const search = upstream("search");
const upload = upstream("upload");

serve("api", async (req, url, requestId) => {
  if (url.pathname === "/api/search") {
    return {
      body: await call(
        search,
        "GET",
        `/search?q=${encodeURIComponent(url.searchParams.get("q") ?? "")}`,
        requestId,
      ),
    };
  }
  if (url.pathname === "/api/papers" && req.method === "POST") {
    return { status: 201, body: await call(upload, "POST", "/upload", requestId, await readBody(req)) };
  }
  return { status: 404, body: { error: "not found" } };
});
