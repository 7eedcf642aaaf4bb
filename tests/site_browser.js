// The course website in a real browser (tests/test_site.py runs this): headless Chromium,
// driven by playwright-core (tools/package.json), opens the home page and one lab page served
// over HTTP, collects console errors, page errors and failed requests, checks that the title,
// the first figure and a rendered equation are visible, and saves screenshots.
//   node tests/site_browser.js BASE_URL LAB_PAGE SCREENSHOT_DIR   (CHROMIUM: the browser binary)
const path = require("path");
const { chromium } = require(path.join(__dirname, "..", "tools", "node_modules", "playwright-core"));

(async () => {
  const [base, labPage, shots] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} (${r.failure().errorText})`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  const report = {};

  await page.goto(`${base}/index.html`, { waitUntil: "networkidle" });
  report.home = {
    title: await page.title(),
    heading_visible: await page.locator("article h1").first().isVisible(),
    lab_links: await page.locator("table a[href^='labs/']").count(),
  };
  await page.screenshot({ path: path.join(shots, "site_home.png") });

  await page.goto(`${base}/${labPage}`, { waitUntil: "networkidle" });
  await page.waitForSelector("mjx-container", { timeout: 20000 }).catch(() => {});
  const figure = page.locator(".cell_output img").first();
  await figure.scrollIntoViewIfNeeded().catch(() => {});
  const equation = page.locator("mjx-container").first();
  report.lab = {
    title: await page.title(),
    heading: await page.locator("article h1").first().innerText(),
    figure_visible: await figure.isVisible(),
    figure_width: await figure.evaluate((img) => img.complete ? img.naturalWidth : 0),
    equations_rendered: await page.locator("mjx-container").count(),
    // TeX left as text in the prose (code and outputs may hold $ legitimately, e.g. plot labels)
    raw_dollar_math: await page.evaluate(() => {
      const prose = document.querySelector("article").cloneNode(true);
      prose.querySelectorAll("pre, .highlight, .cell_output, mjx-container").forEach((e) => e.remove());
      return /\$[^$\s][^$]*\$/.test(prose.innerText);
    }),
  };
  await figure.screenshot({ path: path.join(shots, "site_lab_figure.png") });
  await equation.scrollIntoViewIfNeeded();
  report.lab.equation_visible = await equation.isVisible();
  await page.screenshot({ path: path.join(shots, "site_lab_equation.png") });
  await page.goto(`${base}/${labPage}`, { waitUntil: "networkidle" });
  await page.screenshot({ path: path.join(shots, "site_lab.png") });
  report.problems = problems;
  console.log(JSON.stringify(report));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
