/**
 * Flags tool output that looks like an attempt to instruct the model (prompt
 * injection). Flagging only: the output is still returned, marked as data,
 * with the names of the patterns found.
 */

interface InjectionPattern {
  name: string;
  pattern: RegExp;
}

const PATTERNS: InjectionPattern[] = [
  {
    name: "ignore previous instructions",
    pattern:
      /\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|of\s+)*(?:your\s+|my\s+)?(?:previous|prior|earlier|preceding|above|original|system|existing)\s+(?:instructions?|prompts?|rules|directions|directives|guidelines|context|messages?)\b/i,
  },
  {
    name: "disregard the above",
    pattern: /\b(?:disregard|ignore|forget)\s+(?:everything\s+|all\s+)?(?:the\s+|that\s+)?above\b/i,
  },
  {
    name: "you are now",
    pattern:
      /\byou\s+are\s+now\s+(?:a|an|the|in|my|no\s+longer|free|unrestricted|jailbroken|DAN|acting|operating|going\s+to)\b/i,
  },
  {
    name: "new instructions",
    pattern:
      /\b(?:new|updated|revised|real|actual|important|urgent)\s+(?:system\s+)?instructions?\s*:/i,
  },
  {
    name: "role switch",
    pattern: /(?:^|\n)[ \t>*#]*(?:system|assistant|developer)[ \t]*:/i,
  },
  {
    name: "chat template token",
    pattern:
      /<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text)\|>|\[\/?INST\]|<<\/?SYS>>/i,
  },
  {
    name: "instruction header",
    pattern:
      /(?:^|\n)[ \t]*#{2,}[ \t]*(?:instructions?|system(?:\s+prompt)?|new\s+task|task|response)[ \t]*:?[ \t]*(?:\n|$)/i,
  },
  {
    name: "tool-call lookalike",
    pattern:
      /"(?:tool_calls|function_call)"\s*:|<\/?(?:tool_call|function_calls|invoke|tool_use)\b|"name"\s*:\s*"(?:shell_exec|write_file|edit_file|read_file|list_dir|web_fetch|web_search|browser)"/i,
  },
  {
    name: "hide from the user",
    pattern:
      /\b(?:do\s+not|don't|never)\s+(?:tell|inform|mention\s+(?:this\s+)?to|alert|notify|show)\s+(?:the\s+)?(?:user|human|operator|owner)\b/i,
  },
  {
    name: "reveal the system prompt",
    pattern:
      /\b(?:reveal|print|repeat|output|show|leak)\s+(?:me\s+)?(?:your|the)\s+(?:system\s+prompt|instructions|hidden\s+prompt|api\s+key)\b/i,
  },
];

/** Zero-width and bidi control characters used to hide text from pattern matching. */
const INVISIBLE = /[\u200B-\u200F\u202A-\u202E\u2060-\u2064\uFEFF]/g;

/**
 * The names of the injection patterns found in `text`, in a fixed order,
 * each once; empty when none.
 */
export function detectInjection(text: string): string[] {
  const cleaned = text.replace(INVISIBLE, "");
  return PATTERNS.filter(({ pattern }) => pattern.test(cleaned)).map(({ name }) => name);
}
