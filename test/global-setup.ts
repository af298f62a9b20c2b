import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

// CLI tests spawn the built binary; rebuild dist/ first when any source is newer than it, so a
// test never runs yesterday's build. `npm ci` builds too (prepare), so in CI this is a no-op.
const root = join(import.meta.dirname, "..");
const binary = join(root, "dist", "src", "cli", "main.js");

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = statSync(path);
    newest = Math.max(newest, stat.isDirectory() ? newestMtime(path) : stat.mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  const built = existsSync(binary) ? statSync(binary).mtimeMs : 0;
  const sources = Math.max(newestMtime(join(root, "src")), newestMtime(join(root, "bench")));
  if (sources <= built) return;
  try {
    execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: root, stdio: "pipe" });
  } catch {
    // Type errors still emit JavaScript; the type check step reports them, not the tests.
  }
  if (existsSync(binary)) execFileSync("chmod", ["+x", binary]);
}
