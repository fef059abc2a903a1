/**
 * effect-queue-manager: per-user concurrency limits for Effect programs.
 *
 * @since 0.1.0
 */
export * as QueueManager from "./QueueManager.js"

/**
 * The metrics every QueueManager reports.
 *
 * @since 0.1.0
 */
export * as QueueMetrics from "./QueueMetrics.js"
