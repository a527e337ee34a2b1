// Fails the test command when vitest skipped anything: a skipped test would otherwise count as a pass.
// Reads the JSON report scripts/test.sh asks vitest for (--reporter=json --outputFile=FILE).
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/no-skipped-tests.mjs VITEST_JSON_REPORT");
  process.exit(2);
}
const report = JSON.parse(readFileSync(file, "utf8"));
const notRun = [];
for (const f of report.testResults)
  for (const t of f.assertionResults)
    if (t.status !== "passed" && t.status !== "failed") notRun.push(`${t.status}: ${f.name} > ${t.fullName}`);
if (notRun.length > 0) {
  console.error(
    `\n${notRun.length} test(s) did not run (skipped or todo); the suite does not pass with skips:`,
  );
  for (const l of notRun) console.error(`  ${l}`);
  process.exit(1);
}
console.log(`no skipped tests (${report.numPassedTests} passed)`);
