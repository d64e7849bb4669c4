/**
 * Text from the controller (executor names, labels, task errors and output tails) is
 * not ours: a terminal would act on an escape sequence inside it (move the cursor,
 * rewrite the line, set the window title). Everything the CLI prints goes through
 * here: C0 controls, DEL, C1 controls (U+0080–U+009F, where U+009B is a one-byte CSI)
 * and the bidirectional overrides are written as visible `\uXXXX` escapes. That is
 * also valid inside JSON strings, so `--json` output still parses to the same values.
 */

const UNSAFE_KEEP_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_ONE_LINE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/** Multi-line output: newlines and tabs stay, every other control is made visible. */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE_KEEP_LINES, escape);
}

/** One table cell or one value: newlines are made visible too, so a row stays one line. */
export function oneLine(text: string): string {
  return text.replace(UNSAFE_ONE_LINE, escape);
}
