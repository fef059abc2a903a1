import { defineConfig } from "vitest/config"

/**
 * The slow suites (`npm run test:slow`): the benchmark smoke run, several processes, Redis
 * outages and the fault-injection suite. They need a Redis (the shared one at REDIS_URL, and
 * redis-server to start servers of their own) and run one file at a time: they start
 * processes and servers and measure time bounds.
 */
export default defineConfig({
  test: {
    include: ["test/**/*.slow.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    // what a test logs is shown when it fails, not when it passes
    silent: "passed-only"
  }
})
