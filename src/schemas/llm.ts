/**
 * What the model must return in the assess and plan phases, checked with zod
 * at the boundary. The same schemas become the `response_format` JSON schemas.
 */
import { z } from "zod";
import { PROGRESS_LIMIT } from "../machines/shared.js";

/** The assessment at the start of a tick. */
export const AssessmentSchema = z.object({
  goalComplete: z
    .boolean()
    .describe("true only if the goal is fully achieved right now; otherwise false"),
  actionNeeded: z
    .boolean()
    .describe("true if something should be done this tick; false if nothing needs doing now"),
  assessment: z.string().describe("two or three sentences on where things stand"),
  progressSummary: z
    .string()
    .describe(`the updated summary of all progress so far, at most ${PROGRESS_LIMIT} characters`),
  // Required-but-nullable in the JSON schema (strict structured outputs need
  // every key), yet a reply without it is accepted: older models and servers.
  attention: z
    .string()
    .nullable()
    .default(null)
    .describe(
      "null, unless a human should know something now (a decision only they can make, a problem they must fix, a finding they asked for): then one short sentence saying what",
    ),
  // Required in the JSON schema (strict mode), optional when read: older prompts and servers omit it.
  checklist: z
    .object({
      done: z
        .array(z.string())
        .describe("checklist tasks you did this tick, by their exact text; else []"),
      add: z
        .array(
          z.object({
            every: z.string().describe("how often, e.g. 30m, 2h, 1d"),
            task: z.string().describe("the task, one line"),
          }),
        )
        .describe(
          "recurring tasks to add to the checklist, only when the goal asks for it; else []",
        ),
    })
    .nullable()
    .default(null)
    .describe("checklist changes, or null"),
});

/** The plan for a tick. */
export const PlanSchema = z.object({
  steps: z.array(z.string()).describe("concrete, actionable steps for this tick, at most 7"),
});

/** Longest plan kept. */
export const MAX_PLAN_STEPS = 7;
