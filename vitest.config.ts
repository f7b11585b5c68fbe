import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // CLI tests spawn real processes; on a loaded 2-core CI machine they need room.
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
