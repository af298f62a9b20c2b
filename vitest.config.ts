import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Lab tests create network namespaces; running files in parallel on 2 cores is fine,
    // but each lab test uses its own namespace prefix.
    pool: "forks",
  },
});
