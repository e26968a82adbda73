// Accessibility checks run in the page: WCAG AA text contrast (4.5:1, 3:1 for large text)
// against the effective background, and a label for every form control.
(() => {
  function rgba(text) {
    const m = text.match(/rgba?\(([^)]+)\)/);
    if (!m) { return [0, 0, 0, 0]; }
    const p = m[1].split(",").map((v) => parseFloat(v));
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function luminance([r, g, b]) {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function background(el) {
    // The first opaque background up the tree; gradients and images count as unknown (skip).
    for (let node = el; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.backgroundImage && style.backgroundImage !== "none") { return null; }
      const bg = rgba(style.backgroundColor);
      if (bg[3] >= 0.99) { return bg; }
    }
    return [255, 255, 255, 1];
  }
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!el || seen.has(el) || !walker.currentNode.textContent.trim()) { continue; }
    seen.add(el);
    if (el.closest("svg")) { continue; }  // charts: checked as graphics by their colors
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) { continue; }
    const style = getComputedStyle(el);
    const bg = background(el);
    if (bg === null) { continue; }
    const fg = rgba(style.color);
    const l1 = luminance(fg), l2 = luminance(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(style.fontSize);
    const bold = parseInt(style.fontWeight, 10) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      failures.push(`${el.tagName} "${el.textContent.trim().slice(0, 40)}" ${ratio.toFixed(2)}:1`);
    }
  }
  const unlabelled = [];
  for (const control of document.querySelectorAll("input, select, textarea, button")) {
    if (control.type === "hidden") { continue; }
    const named = (control.labels && control.labels.length) || control.getAttribute("aria-label")
      || (control.tagName === "BUTTON" && control.textContent.trim());
    if (!named) { unlabelled.push(control.outerHTML.slice(0, 80)); }
  }
  return { contrast: failures, unlabelled: unlabelled };
})()
