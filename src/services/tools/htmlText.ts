/**
 * HTML to readable text for the model: drops scripts, styles and other
 * non-content elements, turns block elements into line breaks, list items
 * into `- `, headings into `#`, links into `text (url)`, decodes entities and
 * squeezes whitespace. Linear in the input (no backtracking over the page).
 */

/** Elements whose content is never text for the reader. */
const DROPPED = [
  "script",
  "style",
  "noscript",
  "template",
  "svg",
  "math",
  "iframe",
  "object",
  "canvas",
  "head",
  "select",
];

const BLOCK =
  /^(?:div|section|article|header|footer|nav|aside|main|ul|ol|dl|dt|dd|table|thead|tbody|tfoot|tr|blockquote|hr|form|fieldset|figure|figcaption|address|details|summary|center|body|html)$/;

const NAMED_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: " ",
  ensp: " ",
  emsp: " ",
  thinsp: " ",
  shy: "",
  zwj: "",
  zwnj: "",
  copy: "©",
  reg: "®",
  trade: "™",
  hellip: "…",
  mdash: "—",
  ndash: "–",
  minus: "−",
  lsquo: "‘",
  rsquo: "’",
  sbquo: "‚",
  ldquo: "“",
  rdquo: "”",
  bdquo: "„",
  laquo: "«",
  raquo: "»",
  lsaquo: "‹",
  rsaquo: "›",
  bull: "•",
  middot: "·",
  deg: "°",
  plusmn: "±",
  times: "×",
  divide: "÷",
  frac12: "½",
  frac14: "¼",
  frac34: "¾",
  sup2: "²",
  sup3: "³",
  micro: "µ",
  para: "¶",
  sect: "§",
  euro: "€",
  pound: "£",
  yen: "¥",
  cent: "¢",
  larr: "←",
  rarr: "→",
  uarr: "↑",
  darr: "↓",
  harr: "↔",
  check: "✓",
  hearts: "♥",
  star: "☆",
  iexcl: "¡",
  iquest: "¿",
  auml: "ä",
  ouml: "ö",
  uuml: "ü",
  Auml: "Ä",
  Ouml: "Ö",
  Uuml: "Ü",
  szlig: "ß",
  eacute: "é",
  egrave: "è",
  ecirc: "ê",
  aacute: "á",
  agrave: "à",
  acirc: "â",
  iacute: "í",
  oacute: "ó",
  uacute: "ú",
  ccedil: "ç",
  ntilde: "ñ",
  Eacute: "É",
  oslash: "ø",
  aring: "å",
  aelig: "æ",
};

/** Decodes character references (`&amp;`, `&#39;`, `&#x27;`); unknown names stay as written. */
export function decodeEntities(text: string): string {
  return text.replace(
    /&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?/g,
    (all, ref: string) => {
      if (ref.startsWith("#")) {
        const code =
          ref[1] === "x" || ref[1] === "X"
            ? Number.parseInt(ref.slice(2), 16)
            : Number(ref.slice(1));
        if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return "\uFFFD";
        return String.fromCodePoint(code);
      }
      return NAMED_ENTITIES[ref] ?? all;
    },
  );
}

/** Removes `<!-- … -->` comments and the content of {@link DROPPED} elements, scanning once. */
function dropNonContent(html: string): string {
  const lower = html.toLowerCase();
  const out: string[] = [];
  let at = 0;
  const openTag = new RegExp(`<!--|<(${DROPPED.join("|")})[\\s/>]`, "g");
  while (at < html.length) {
    openTag.lastIndex = at;
    const match = openTag.exec(lower);
    if (!match) break;
    const start = match.index;
    if (match[0] === "<!--") {
      out.push(html.slice(at, start));
      const end = lower.indexOf("-->", start + 4);
      at = end === -1 ? html.length : end + 3;
      continue;
    }
    const name = match[1] as string;
    out.push(html.slice(at, start), " ");
    const close = lower.indexOf(`</${name}`, start + name.length + 1);
    if (close === -1) {
      at = html.length;
    } else {
      const gt = lower.indexOf(">", close);
      at = gt === -1 ? html.length : gt + 1;
    }
  }
  out.push(html.slice(at));
  return out.join("");
}

/** Squeezes spaces within lines and blank lines between them. */
function squeeze(text: string): string {
  return text
    .split("\n")
    .map((line) => line.replace(/[ \t\f\v\r\u00a0]+/g, " ").trim())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/** A start or end tag (attributes may hold quoted `>`), or a `<!…>` / `<?…>` declaration. */
const TAG = /<(\/?)([A-Za-z][A-Za-z0-9-]*)((?:[^>"']|"[^"]*"|'[^']*')*)>|<[!?][^>]*>/g;

const ATTRIBUTES: Record<"href" | "alt", RegExp> = {
  href: /(?:^|\s)href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/i,
  alt: /(?:^|\s)alt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/i,
};

function attribute(attrs: string, name: "href" | "alt"): string | undefined {
  const match = ATTRIBUTES[name].exec(attrs);
  return match ? decodeEntities(match[1] ?? match[2] ?? match[3] ?? "") : undefined;
}

/**
 * Converts an HTML document to plain text.
 *
 * @param html - The page.
 * @param baseUrl - Where the page came from, to make link targets absolute.
 * @returns The title line (when there is one) and the text.
 */
export function htmlToText(html: string, baseUrl?: string): string {
  const titleMatch = /<title[^>]*>([\s\S]*?)<\/title\s*>/i.exec(html.slice(0, 200_000));
  const title = titleMatch
    ? squeeze(decodeEntities((titleMatch[1] ?? "").replace(/<[^>]*>/g, "")))
    : "";
  // U+E000 (private use) marks <pre> blocks below; it is dropped from the page first.
  const body = dropNonContent(html.replace(/\uE000/g, ""));
  let base: URL | undefined;
  try {
    base = baseUrl ? new URL(baseUrl) : undefined;
  } catch {
    base = undefined;
  }

  // Parts, not one growing string: slicing a concatenated string flattens it each time.
  const parts: string[] = [];
  const pres: string[] = [];
  let inPre = 0;
  let preStart = -1;
  let link: { href: string; start: number } | undefined;
  const closePre = () => {
    pres.push(decodeEntities(parts.splice(preStart).join("")).replace(/^\n|\n$/g, ""));
    parts.push(`\uE000${pres.length - 1}\uE000`);
  };
  let last = 0;
  TAG.lastIndex = 0;
  for (let match = TAG.exec(body); match !== null; match = TAG.exec(body)) {
    parts.push(body.slice(last, match.index));
    last = TAG.lastIndex;
    if (match[2] === undefined) continue;
    const closing = match[1] === "/";
    const name = match[2].toLowerCase();
    const attrs = match[3] ?? "";
    if (name === "pre") {
      if (!closing) {
        if (inPre === 0) {
          parts.push("\n\n");
          preStart = parts.length;
        }
        inPre += 1;
      } else if (inPre > 0) {
        inPre -= 1;
        if (inPre === 0) {
          closePre();
          parts.push("\n\n");
        }
      }
      continue;
    }
    if (inPre > 0) {
      if (name === "br") parts.push("\n");
      continue;
    }
    if (name === "br") parts.push("\n");
    else if (name === "li") {
      if (!closing) parts.push("\n- ");
    } else if (/^h[1-6]$/.test(name)) {
      parts.push(closing ? "\n\n" : `\n\n${"#".repeat(Number(name[1]))} `);
    } else if (name === "td" || name === "th") {
      if (!closing) parts.push(" | ");
    } else if (name === "img") {
      const alt = closing ? undefined : attribute(attrs, "alt");
      if (alt) parts.push(`[image: ${alt}]`);
    } else if (name === "a") {
      if (!closing) {
        const href = attribute(attrs, "href");
        let absolute: string | undefined;
        try {
          absolute = href ? new URL(href, base).href : undefined;
        } catch {
          absolute = undefined;
        }
        link =
          absolute && /^https?:/i.test(absolute)
            ? { href: absolute, start: parts.length }
            : undefined;
      } else if (link) {
        const text = decodeEntities(parts.slice(link.start).join("")).trim();
        if (text !== "" && text !== link.href) parts.push(` (${link.href})`);
        link = undefined;
      }
    } else if (name === "p") parts.push("\n\n");
    else if (BLOCK.test(name)) parts.push("\n");
  }
  parts.push(body.slice(last));
  if (inPre > 0 && preStart >= 0) closePre();

  // Tags are gone; a stray `<` that opened no tag stays as text.
  const text = squeeze(decodeEntities(parts.join(""))).replace(
    /\uE000(\d+)\uE000/g,
    (_all, index: string) => pres[Number(index)] ?? "",
  );
  return title ? `Title: ${title}\n\n${text}` : text;
}
