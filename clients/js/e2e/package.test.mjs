// The package installs like any npm package: `npm pack` makes a tarball holding only what a user
// needs; it installs offline into a fresh project (no runtime dependencies), imports in Node as
// ESM, typechecks a TypeScript file against its declarations, and imports as a module in
// Chromium through the installed package's `exports`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = resolve(here, "..");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TSC = join(pkgDir, "node_modules", ".bin", "tsc");

let work;
let project;
let tarball;

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "imsgate-pack-"));
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work], pkgDir));
  tarball = { name: packed[0].filename, files: packed[0].files.map((f) => f.path).sort() };
  project = join(work, "app");
  run("mkdir", ["-p", project]);
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "pack-check", private: true, type: "module" }),
  );
  run(
    "npm",
    ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", join(work, tarball.name)],
    project,
  );
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test("the tarball holds the code, its types, README and LICENSE, and nothing else", () => {
  assert.equal(tarball.name, "imsgate-client-auth-0.1.0.tgz");
  assert.deepEqual(tarball.files, [
    "LICENSE",
    "README.md",
    "dist/index.d.ts",
    "dist/index.js",
    "package.json",
  ]);
  assert.equal(pkg.exports["."].import, "./dist/index.js");
  assert.equal(pkg.exports["."].types, "./dist/index.d.ts");
  assert.deepEqual(pkg.dependencies ?? {}, {}, "no runtime dependencies");
});

const FAKE_TOKEN_CHECK = `
const calls = [];
const fakeFetch = async (url, init) => {
  calls.push([String(url), init.headers.Authorization ?? init.headers.get?.("authorization")]);
  return new Response(JSON.stringify({
    clientAccessToken: "token-1",
    tokenExpiryTimestampMs: Date.now() + 300000,
    tokenId: "3ab6695f-2616-503d-9f9b-55012187ac39",
  }), { status: 200, headers: { "content-type": "application/json" } });
};
const provider = createClientAuthProvider({
  endpoint: "https://imsgate.test/api/client-token",
  getCallerCredential: async () => "Bearer caller",
  fetch: fakeFetch,
});
const details = await provider();
const result = { token: details.clientAccessToken, user: details.userGuid, calls: calls.length };
`;

test("Node imports the installed package as ESM and the provider works", () => {
  writeFileSync(
    join(project, "check.mjs"),
    `import { createClientAuthProvider } from "@imsgate/client-auth";\n${FAKE_TOKEN_CHECK}\nconsole.log(JSON.stringify(result));\n`,
  );
  const out = JSON.parse(run("node", ["check.mjs"], project));
  assert.deepEqual(out, { token: "token-1", user: "3ab6695f-2616-503d-9f9b-55012187ac39", calls: 1 });
});

test("a TypeScript file typechecks against the installed declarations", () => {
  writeFileSync(
    join(project, "check.ts"),
    `import { createClientAuthProvider, type ClientAuthDetails, ClientAuthError } from "@imsgate/client-auth";
const provider = createClientAuthProvider({
  endpoint: "https://imsgate.test/api/client-token",
  getCallerCredential: async () => "Bearer caller",
});
const details: Promise<ClientAuthDetails> = provider();
const kind: string = new ClientAuthError("network", "x").kind;
// @ts-expect-error: the declarations are read, so a missing required option is an error.
createClientAuthProvider({ endpoint: "https://imsgate.test/api/client-token" });
export { details, kind };
`,
  );
  writeFileSync(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        module: "nodenext",
        moduleResolution: "nodenext",
        target: "es2022",
        lib: ["es2022", "dom"],
        skipLibCheck: false,
      },
      files: ["check.ts"],
    }),
  );
  try {
    run(TSC, ["-p", "tsconfig.json"], project);
  } catch (e) {
    assert.fail(`tsc: ${e.stdout}${e.stderr}`);
  }
});

const TYPES = { ".js": "text/javascript", ".html": "text/html", ".json": "application/json" };

test("Chromium imports the installed package as a module through its exports", async () => {
  const installed = join(project, "node_modules", "@imsgate", "client-auth");
  const entry = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")).exports["."].import;
  const page = `<!doctype html><script type="importmap">${JSON.stringify({
    imports: { "@imsgate/client-auth": `/node_modules/@imsgate/client-auth/${entry.replace(/^\.\//, "")}` },
  })}</script><script type="module">
import { createClientAuthProvider } from "@imsgate/client-auth";
try {
${FAKE_TOKEN_CHECK}
window.result = result;
} catch (e) { window.result = { error: String(e) }; }
</script>`;
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end(page);
      return;
    }
    const file = normalize(join(project, path));
    if (!file.startsWith(join(project, "node_modules"))) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  try {
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${server.address().port}/`);
    await tab.waitForFunction(() => window.result !== undefined, null, { timeout: 10_000 });
    const result = await tab.evaluate(() => window.result);
    assert.deepEqual(result, { token: "token-1", user: "3ab6695f-2616-503d-9f9b-55012187ac39", calls: 1 });
  } finally {
    await browser.close();
    server.close();
  }
});
