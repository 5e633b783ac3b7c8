"""The ``observe`` walker: one in-page script that summarises a page and tags its elements.

Theory of operation. ``observe`` runs :data:`OBSERVE_JS` once in the page (a single CDP round
trip, a few milliseconds on an ordinary page). The script
  1. finds interactive elements (links, buttons, form fields, ARIA widgets, ``onclick``,
     focusable ``tabindex``) that are rendered (``checkVisibility`` plus a non-empty box; being
     scrolled out of the viewport does not hide an element),
  2. gives each one an id ``el_N`` stored in the DOM attribute :data:`ID_ATTR`. An element that
     already carries an id from an earlier observe keeps it; new elements get numbers from the
     slot's counter, which only grows, so an id is never reused for a different element, even
     after a navigation, a browser relaunch or ``close``. A copy of a tagged node (cloneNode keeps
     attributes) is told apart and gets a fresh id,
  3. collects visible text outside those elements, grouped by block (paragraph, heading, cell).

The summary is two sections of lines: ``  (role) text`` for visible text and
``[el_N] role "name"`` for elements (name JSON-quoted, then ``value="..."``, ``checked`` or
``disabled`` where they apply; password values are masked). Long pages are capped: every
element gets an id but only the first :data:`MAX_ELEMENT_LINES` are listed, with a note.
Limits: elements inside iframes and closed shadow roots are not seen; open shadow roots are.

:data:`RESOLVE_JS` looks an id up again for click/type: ``missing`` (stale), ``hidden`` or
``ok:<TAG>`` (plus ``:popup`` when clicking it opens a new tab: a link or form with a target).
"""

from __future__ import annotations

ID_ATTR = "data-carnb-id"
MAX_ELEMENT_LINES = 400
MAX_TEXT_LINES = 300
MAX_NAME = 100
MAX_TEXT = 200

OBSERVE_JS = r"""
([attr, counter, maxElements, maxText, maxName, maxTextLen]) => {
  const INTERACTIVE = 'a[href],button,input:not([type=hidden]),select,textarea,summary,' +
    '[role=button],[role=link],[role=checkbox],[role=radio],[role=tab],[role=menuitem],' +
    '[role=menuitemcheckbox],[role=menuitemradio],[role=option],[role=switch],[role=textbox],' +
    '[role=searchbox],[role=combobox],[role=slider],[role=spinbutton],[role=treeitem],' +
    '[contenteditable=""],[contenteditable=true],[onclick],[tabindex]:not([tabindex="-1"])';
  const SKIP = new Set(['SCRIPT','STYLE','NOSCRIPT','TEMPLATE','HEAD','TITLE','META','LINK',
                        'SVG','svg','IFRAME','OBJECT','EMBED','CANVAS']);
  const BLOCK = new Set(['P','DIV','LI','H1','H2','H3','H4','H5','H6','TD','TH','SECTION',
    'ARTICLE','HEADER','FOOTER','MAIN','NAV','ASIDE','LABEL','PRE','BLOCKQUOTE','DT','DD',
    'CAPTION','FIGCAPTION','LEGEND','BODY','FORM','FIELDSET','TABLE','TR','UL','OL','DL',
    'DIALOG','DETAILS','ADDRESS','CENTER']);
  const clip = (s, n) => { s = (s || '').replace(/\s+/g, ' ').trim();
                           return s.length > n ? s.slice(0, n - 1) + '\u2026' : s; };
  const visCache = new Map();
  const visible = (el) => {
    let v = visCache.get(el);
    if (v !== undefined) return v;
    v = true;
    if (el.checkVisibility) {
      v = el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true,
                              opacityProperty: true, visibilityProperty: true});
    }
    if (v) { const r = el.getBoundingClientRect(); v = r.width > 0 && r.height > 0; }
    visCache.set(el, v);
    return v;
  };
  const roleOf = (el) => {
    const explicit = (el.getAttribute('role') || '').trim().split(/\s+/)[0];
    if (explicit) return explicit;
    const tag = el.tagName;
    if (tag === 'A') return 'link';
    if (tag === 'BUTTON' || tag === 'SUMMARY') return 'button';
    if (tag === 'TEXTAREA') return 'textbox';
    if (tag === 'SELECT') return (el.multiple || el.size > 1) ? 'listbox' : 'combobox';
    if (tag === 'INPUT') {
      const t = (el.getAttribute('type') || 'text').toLowerCase();
      if (['button','submit','reset','image'].includes(t)) return 'button';
      if (t === 'checkbox' || t === 'radio') return t;
      if (t === 'range') return 'slider';
      if (t === 'number') return 'spinbutton';
      if (t === 'search') return 'searchbox';
      if (t === 'file') return 'button';
      return 'textbox';
    }
    if (el.isContentEditable) return 'textbox';
    return 'generic';
  };
  const nameOf = (el) => {
    const ids = el.getAttribute('aria-labelledby');
    if (ids) {
      const t = ids.split(/\s+/).map(i => document.getElementById(i))
                   .filter(Boolean).map(e => e.textContent).join(' ');
      if (clip(t, maxName)) return clip(t, maxName);
    }
    const aria = el.getAttribute('aria-label');
    if (aria && aria.trim()) return clip(aria, maxName);
    const tag = el.tagName;
    if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') {
      const t = (el.getAttribute('type') || '').toLowerCase();
      if (tag === 'INPUT' && ['button','submit','reset'].includes(t))
        return clip(el.value || {submit: 'Submit', reset: 'Reset'}[t] || '', maxName);
      if (tag === 'INPUT' && t === 'image') return clip(el.alt || el.value, maxName);
      if (el.labels && el.labels.length) {
        const t2 = Array.from(el.labels).map(l => l.textContent).join(' ');
        if (clip(t2, maxName)) return clip(t2, maxName);
      }
      return clip(el.getAttribute('placeholder') || el.title || el.getAttribute('name') || '',
                  maxName);
    }
    let text = clip(el.textContent, maxName);
    if (!text) {
      const img = el.querySelector('img[alt]');
      text = clip(el.title || (img && img.alt) || '', maxName);
    }
    return text;
  };
  const valueOf = (el) => {
    const tag = el.tagName;
    if (tag === 'INPUT') {
      const t = (el.getAttribute('type') || 'text').toLowerCase();
      if (t === 'checkbox' || t === 'radio') return el.checked ? ' checked' : '';
      if (['button','submit','reset','image','file'].includes(t)) return '';
      if (!el.value) return '';
      return ' value=' + JSON.stringify(t === 'password' ? '*'.repeat(el.value.length)
                                                         : clip(el.value, maxTextLen));
    }
    if (tag === 'TEXTAREA')
      return el.value ? ' value=' + JSON.stringify(clip(el.value, maxTextLen)) : '';
    if (tag === 'SELECT') {
      const o = el.selectedOptions && el.selectedOptions[0];
      return o ? ' value=' + JSON.stringify(clip(o.textContent, maxName)) : '';
    }
    const checked = el.getAttribute('aria-checked');
    return checked === 'true' ? ' checked' : '';
  };

  // 1. interactive elements, in document order, including open shadow roots
  const roots = [document];
  const found = [];
  for (let r = 0; r < roots.length; r++) {
    const root = roots[r];
    for (const el of root.querySelectorAll(INTERACTIVE)) found.push(el);
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) roots.push(el.shadowRoot);
  }
  const seen = new Set();
  const lines = [];
  let count = 0;
  const interactiveSet = new Set();
  for (const el of found) {
    if (seen.has(el)) continue;
    seen.add(el);
    if (!visible(el)) continue;
    interactiveSet.add(el);
    let id = el.getAttribute(attr);
    if (!id || !/^el_\d+$/.test(id) || seen.has(id)) {
      id = 'el_' + (counter++);
      el.setAttribute(attr, id);
    }
    seen.add(id);
    count++;
    if (lines.length < maxElements) {
      let line = '[' + id + '] ' + roleOf(el) + ' ' + JSON.stringify(nameOf(el)) + valueOf(el);
      if (el.disabled || el.getAttribute('aria-disabled') === 'true') line += ' disabled';
      lines.push(line);
    }
  }
  if (count > lines.length)
    lines.push('... ' + (count - lines.length) + ' more elements not listed');

  // 2. visible text outside interactive elements, grouped by block ancestor
  const inside = new Map();
  const insideInteractive = (el) => {
    let v = inside.get(el);
    if (v !== undefined) return v;
    v = interactiveSet.has(el) || (el.parentElement ? insideInteractive(el.parentElement) : false);
    inside.set(el, v);
    return v;
  };
  const blocks = new Map();
  const order = [];
  const textLines = [];
  if (document.body) {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const parent = node.parentElement;
      if (!parent || !node.nodeValue.trim()) continue;
      if (SKIP.has(parent.tagName)) continue;
      if (parent.closest('script,style,noscript,template,svg')) continue;
      if (insideInteractive(parent) || !visible(parent)) continue;
      let block = parent;
      while (block.parentElement && !BLOCK.has(block.tagName)) block = block.parentElement;
      let parts = blocks.get(block);
      if (!parts) { parts = []; blocks.set(block, parts); order.push(block); }
      parts.push(node.nodeValue);
    }
  }
  let omitted = 0;
  for (const block of order) {
    const text = clip(blocks.get(block).join(' '), maxTextLen);
    if (!text) continue;
    if (textLines.length >= maxText) { omitted++; continue; }
    const tag = block.tagName;
    const role = /^H[1-6]$/.test(tag) ? 'heading' : tag === 'LI' ? 'listitem'
               : (tag === 'TD' || tag === 'TH') ? 'cell' : tag === 'PRE' ? 'code' : 'text';
    textLines.push('  (' + role + ') ' + text);
  }
  if (omitted) textLines.push('  ... ' + omitted + ' more text blocks not listed');
  const summary = '## Visible text\n' + textLines.join('\n') +
                  (textLines.length ? '\n' : '') + '## Interactive elements\n' + lines.join('\n') +
                  (lines.length ? '\n' : '');
  return {url: location.href, title: document.title, element_count: count, summary, counter};
}
"""

RESOLVE_JS = r"""
([attr, id]) => {
  const sel = '[' + attr + '="' + id + '"]';
  let el = document.querySelector(sel);
  if (!el) {
    const roots = [];
    for (const e of document.querySelectorAll('*')) if (e.shadowRoot) roots.push(e.shadowRoot);
    for (let i = 0; i < roots.length && !el; i++) {
      el = roots[i].querySelector(sel);
      for (const e of roots[i].querySelectorAll('*')) if (e.shadowRoot) roots.push(e.shadowRoot);
    }
  }
  if (!el) return 'missing';
  const opts = {checkVisibilityCSS: true, visibilityProperty: true};
  if (el.checkVisibility && !el.checkVisibility(opts)) return 'hidden';
  const r = el.getBoundingClientRect();
  if (!(r.width > 0 && r.height > 0)) return 'hidden';
  // will a click open a new tab? (a link or form with a target other than this frame)
  const named = (t) => !!t && !['_self', '_parent', '_top'].includes(t.toLowerCase()) &&
                       (t.toLowerCase() === '_blank' || !window.frames[t]);  // not an iframe
  const link = el.closest('a[href][target], area[href][target]');
  const form = el.form || el.closest('form');
  const submits = el.type === 'submit' || el.type === 'image' ||
                  (el.tagName === 'BUTTON' && !el.getAttribute('type'));
  const popup = (link && named(link.target)) || (form && submits && named(form.target));
  return 'ok:' + el.tagName + (popup ? ':popup' : '');
}
"""

SCROLL_JS = r"""
async (dy) => {
  window.scrollBy({top: dy, left: 0, behavior: 'instant'});
  // scroll events are dispatched with the next frame; let the page's listeners run first
  await new Promise((done) => { requestAnimationFrame(() => done()); setTimeout(done, 100); });
  return {scroll_y: window.scrollY, scroll_height: document.documentElement.scrollHeight};
}
"""

SELECT_JS = r"""
(select, text) => {
  const opts = Array.from(select.options);
  const hit = opts.find(o => o.label === text || o.text.trim() === text)
           || opts.find(o => o.value === text);
  return {value: hit ? hit.value : null, labels: opts.map(o => o.label)};
}
"""
