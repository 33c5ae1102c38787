/**
 * Text extraction for ingestion, by file name: .txt, .md, .html, .json, .jsonl and .pdf (LLMariner §5
 * took .pdf, .html and .txt). A file of another kind is `unsupported_file`; one that does not parse as
 * its kind is `invalid_file` (OpenAI API: vector store file `last_error.code`).
 */
export type IngestionErrorCode = 'server_error' | 'unsupported_file' | 'invalid_file';

export class IngestionError extends Error {
  override name = 'IngestionError';
  constructor(
    readonly code: IngestionErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const SUPPORTED_EXTENSIONS = ['.txt', '.md', '.markdown', '.html', '.htm', '.json', '.jsonl', '.pdf'] as const;

function extensionOf(filename: string): string {
  const dot = filename.lastIndexOf('.');
  return dot === -1 ? '' : filename.slice(dot).toLowerCase();
}

/** Whether the file's name says it can be ingested (checked again, with its bytes, by `extractText`). */
export function isSupported(filename: string): boolean {
  return (SUPPORTED_EXTENSIONS as readonly string[]).includes(extensionOf(filename));
}

function utf8(bytes: Uint8Array, filename: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    throw new IngestionError('invalid_file', `${filename} is not valid UTF-8 text`);
  }
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/** The readable text of an HTML document: no scripts, styles or tags; block elements become line breaks. */
export function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, '')
    .replace(/<(script|style|noscript|template)\b[\s\S]*?<\/\1\s*>/gi, '')
    .replace(/<\/?(p|div|br|li|ul|ol|h[1-6]|tr|table|section|article|header|footer|blockquote|pre)\b[^>]*>/gi, '\n')
    .replace(/<[^>]+>/g, '')
    .replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, name: string) => {
      if (name[0] === '#') {
        const code = name[1] === 'x' || name[1] === 'X' ? Number.parseInt(name.slice(2), 16) : Number.parseInt(name.slice(1), 10);
        return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
      }
      return ENTITIES[name.toLowerCase()] ?? whole;
    })
    .replace(/[ \t\r\f\v]+/g, ' ')
    .replace(/ *\n */g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/** pdfjs is loaded on first use: most platforms never see a PDF, and it is a large module. */
let pdfjs: Promise<typeof import('pdfjs-dist/legacy/build/pdf.mjs')> | undefined;

function loadPdfjs() {
  // pdfjs' display layer builds a DOMMatrix at import; text extraction never uses it, and Node has
  // none. Stand-ins keep it from reaching for a native canvas package (package.json overrides
  // @napi-rs/canvas to an empty package: no native binaries).
  const g = globalThis as Record<string, unknown>;
  g['DOMMatrix'] ??= class DOMMatrix {
    a = 1;
    b = 0;
    c = 0;
    d = 1;
    e = 0;
    f = 0;
  };
  g['ImageData'] ??= class ImageData {};
  g['Path2D'] ??= class Path2D {};
  pdfjs ??= import('pdfjs-dist/legacy/build/pdf.mjs');
  return pdfjs;
}

/** The text of a PDF, page by page (pdfjs-dist, Mozilla's PDF.js: pure JavaScript). */
async function pdfText(bytes: Uint8Array, filename: string): Promise<string> {
  const { getDocument, VerbosityLevel } = await loadPdfjs();
  let doc;
  try {
    doc = await getDocument({
      data: new Uint8Array(bytes),
      isEvalSupported: false,
      useSystemFonts: false,
      verbosity: VerbosityLevel.ERRORS,
      stopAtErrors: true,
    }).promise;
  } catch (error) {
    throw new IngestionError('invalid_file', `${filename} is not a readable PDF: ${(error as Error).message}`);
  }
  try {
    const pages: string[] = [];
    for (let n = 1; n <= doc.numPages; n++) {
      const page = await doc.getPage(n);
      const content = await page.getTextContent();
      let text = '';
      for (const item of content.items) {
        if (!('str' in item)) continue;
        text += item.str + (item.hasEOL ? '\n' : '');
      }
      pages.push(text.trim());
      page.cleanup();
    }
    return pages.filter(Boolean).join('\n\n');
  } catch (error) {
    throw new IngestionError('invalid_file', `${filename}: the PDF could not be read: ${(error as Error).message}`);
  } finally {
    await doc.destroy();
  }
}

/** The text to chunk from a file's bytes, by the file's name. */
export async function extractText(filename: string, bytes: Uint8Array): Promise<string> {
  const extension = extensionOf(filename);
  let text: string;
  switch (extension) {
    case '.txt':
    case '.md':
    case '.markdown':
      text = utf8(bytes, filename);
      break;
    case '.html':
    case '.htm':
      text = htmlToText(utf8(bytes, filename));
      break;
    case '.json':
      try {
        // Re-printed with line breaks, so the chunker can split it between members.
        text = JSON.stringify(JSON.parse(utf8(bytes, filename)), null, 2);
      } catch (error) {
        if (error instanceof IngestionError) throw error;
        throw new IngestionError('invalid_file', `${filename} is not valid JSON: ${(error as Error).message}`);
      }
      break;
    case '.jsonl': {
      const lines = utf8(bytes, filename).split('\n');
      const records: string[] = [];
      lines.forEach((line, i) => {
        if (line.trim() === '') return;
        try {
          records.push(JSON.stringify(JSON.parse(line)));
        } catch {
          throw new IngestionError('invalid_file', `${filename}: line ${i + 1} is not valid JSON`);
        }
      });
      // One record per paragraph: the chunker keeps records whole where they fit.
      text = records.join('\n\n');
      break;
    }
    case '.pdf':
      text = await pdfText(bytes, filename);
      break;
    default:
      throw new IngestionError(
        'unsupported_file',
        `${filename}: ${extension ? `${extension} files are` : 'files without an extension are'} not supported; use ${SUPPORTED_EXTENSIONS.join(', ')}`,
      );
  }
  if (text.trim() === '') throw new IngestionError('invalid_file', `${filename} has no text to index`);
  return text;
}
