// DB-access service: the only service that touches the "databases" (title/author and title/PDF tables,
// in memory here). GET /papers?q=WORDS&limit=N finds by title words; POST /papers stores a paper.
import { readBody, serve } from "./lib.js";

const WORDS = [
  "container",
  "identity",
  "log",
  "tracing",
  "microservice",
  "kubernetes",
  "mesh",
  "latency",
  "cloud",
  "scheduling",
  "network",
  "storage",
  "failure",
  "analysis",
  "distributed",
  "consensus",
  "stream",
  "index",
  "search",
  "cache",
  "replica",
  "sidecar",
  "observability",
  "security",
  "edge",
];
const AUTHORS = ["Iijima", "Kushida", "Lamport", "Liskov", "Dean", "Ghemawat", "Burns", "Oppenheimer"];

// Deterministic content so every trial serves the same data.
const titles = new Map(); // id → {title, authors, year}
const pdfs = new Map(); // id → pdf size in bytes
let seed = 42;
const rnd = (n) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
for (let id = 1; id <= 2000; id++) {
  const words = [WORDS[rnd(WORDS.length)], WORDS[rnd(WORDS.length)], WORDS[rnd(WORDS.length)]];
  titles.set(id, {
    id,
    title: words.join(" "),
    authors: [AUTHORS[rnd(AUTHORS.length)]],
    year: 2000 + rnd(24),
  });
  pdfs.set(id, 100_000 + rnd(900_000));
}
let nextId = titles.size + 1;

serve("db-access", async (req, url) => {
  if (req.method === "POST" && url.pathname === "/papers") {
    const body = await readBody(req);
    const id = nextId++;
    titles.set(id, {
      id,
      title: String(body.title ?? ""),
      authors: body.authors ?? [],
      year: body.year ?? 2024,
    });
    pdfs.set(id, Number(body.pdfBytes ?? 0));
    return { status: 201, body: { id } };
  }
  if (url.pathname === "/papers") {
    const terms = (url.searchParams.get("q") ?? "").toLowerCase().split(/\s+/).filter(Boolean);
    const limit = Number(url.searchParams.get("limit") ?? 10);
    const hits = [];
    for (const p of titles.values()) {
      if (terms.every((t) => p.title.includes(t))) hits.push({ ...p, pdfBytes: pdfs.get(p.id) });
      if (hits.length >= 200) break;
    }
    return { body: { total: hits.length, papers: hits.slice(-limit) } };
  }
  return { status: 404, body: { error: "not found" } };
});
