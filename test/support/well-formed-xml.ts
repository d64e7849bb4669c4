/**
 * A strict XML well-formedness check, for the bench report's SVG files and its page
 * (written as XHTML-compatible HTML): one root element, every tag closed in order, attribute
 * values quoted and unique per element, `<` never raw in text or attributes, `&` only as an
 * entity or character reference. No dependency; not a validating parser (no DTDs, no
 * namespaces checked). Returns the first problem, or null.
 */
export interface Element {
  name: string;
  attributes: Record<string, string>;
}

const NAME = /^[A-Za-z_:][\w.:-]*/;
const BAD_AMP = /&(?!(?:[A-Za-z][\w.-]*|#\d+|#x[0-9A-Fa-f]+);)/;

export function xmlProblem(text: string, opts: { doctype?: boolean; onElement?: (e: Element) => void } = {}): string | null {
  let i = 0;
  const at = () => `at offset ${i} (…${JSON.stringify(text.slice(Math.max(0, i - 30), i + 30))}…)`;
  if (text.startsWith("<?xml")) {
    const end = text.indexOf("?>");
    if (end < 0) return "unterminated XML declaration";
    i = end + 2;
  }
  if (opts.doctype) {
    const m = /^\s*<!DOCTYPE[^>]*>/i.exec(text.slice(i));
    if (m) i += m[0].length;
  }
  const stack: string[] = [];
  let roots = 0;
  while (i < text.length) {
    const lt = text.indexOf("<", i);
    const chunk = text.slice(i, lt < 0 ? text.length : lt);
    if (BAD_AMP.test(chunk)) return `raw & in text ${at()}`;
    if (stack.length === 0 && chunk.trim() !== "") return `text outside the root element ${at()}`;
    if (lt < 0) break;
    i = lt;
    if (text.startsWith("<!--", i)) {
      const end = text.indexOf("-->", i + 4);
      if (end < 0) return `unterminated comment ${at()}`;
      i = end + 3;
      continue;
    }
    if (text.startsWith("<![CDATA[", i)) {
      const end = text.indexOf("]]>", i);
      if (end < 0 || stack.length === 0) return `bad CDATA ${at()}`;
      i = end + 3;
      continue;
    }
    if (text.startsWith("</", i)) {
      const m = /^<\/([A-Za-z_:][\w.:-]*)\s*>/.exec(text.slice(i));
      if (!m) return `bad closing tag ${at()}`;
      const open = stack.pop();
      if (open !== m[1]) return `</${m[1]}> closes <${open ?? "nothing"}> ${at()}`;
      i += m[0].length;
      continue;
    }
    // An element's start tag.
    i++;
    const name = NAME.exec(text.slice(i))?.[0];
    if (!name) return `bad tag name ${at()}`;
    i += name.length;
    const attributes: Record<string, string> = {};
    for (;;) {
      const ws = /^\s*/.exec(text.slice(i))![0];
      i += ws.length;
      if (text.startsWith("/>", i) || text[i] === ">") break;
      if (!ws) return `no space before an attribute ${at()}`;
      const an = NAME.exec(text.slice(i))?.[0];
      if (!an) return `bad attribute name ${at()}`;
      i += an.length;
      const eq = /^\s*=\s*/.exec(text.slice(i));
      if (!eq) return `attribute ${an} without a value ${at()}`;
      i += eq[0].length;
      const q = text[i];
      if (q !== '"' && q !== "'") return `attribute ${an} not quoted ${at()}`;
      const end = text.indexOf(q, i + 1);
      if (end < 0) return `unterminated attribute ${an} ${at()}`;
      const value = text.slice(i + 1, end);
      if (value.includes("<")) return `< in attribute ${an} ${at()}`;
      if (BAD_AMP.test(value)) return `raw & in attribute ${an} ${at()}`;
      if (an in attributes) return `duplicate attribute ${an} ${at()}`;
      attributes[an] = value;
      i = end + 1;
    }
    if (stack.length === 0 && ++roots > 1) return `a second root element <${name}> ${at()}`;
    opts.onElement?.({ name, attributes });
    if (text.startsWith("/>", i)) i += 2;
    else {
      i += 1;
      stack.push(name);
    }
  }
  if (stack.length) return `unclosed <${stack.at(-1)}>`;
  if (roots !== 1) return "no root element";
  return null;
}
