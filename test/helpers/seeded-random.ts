/**
 * mulberry32, a small seeded PRNG: a randomised test (kill delays), a load generator's choices and a bootstrap
 * interval can each be replayed from their seed. The one copy for tests and bench/.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
