// The compose form. Its fields, limits, defaults and help come from the request schemas of the
// daemon's own OpenAPI document (MusicGenParams, AceStepParams): there is no second copy of the
// rules here. The form checks nothing itself; the daemon does, and its message naming the field
// is shown next to that field.

import { API, call, get } from './api.js';

/** Fields shown first; the rest of a family's parameters go under "More parameters". */
const MAIN = ['prompt', 'lyrics', 'duration', 'count', 'language', 'bpm', 'key', 'time_signature'];
/** Parameters the form does not offer: the model has its own menu; melody_source is bookkeeping. */
const SKIP = new Set(['model', 'melody_source']);
const SCHEMA_OF = { musicgen: 'MusicGenParams', 'ace-step': 'AceStepParams' };

/** A property's schema without its null alternative (`anyOf: [X, null]`, `type: [T, "null"]`, a null
 * in `enum`): {type, enum, minimum, ..., nullable}. */
export function unwrap(prop) {
  const out = { ...prop };
  if (Array.isArray(prop.type)) {
    const types = prop.type.filter((t) => t !== 'null');
    out.nullable = types.length < prop.type.length;
    out.type = types.length === 1 ? types[0] : types;
  }
  if (Array.isArray(prop.enum) && prop.enum.includes(null)) {
    out.enum = prop.enum.filter((v) => v !== null);
    out.nullable = true;
  }
  if (Array.isArray(prop.anyOf)) {
    const branches = prop.anyOf.filter((b) => b.type !== 'null');
    out.nullable = branches.length < prop.anyOf.length;
    if (branches.length === 1) Object.assign(out, unwrap(branches[0]), { default: prop.default });
    if (!out.description) out.description = branches.find((b) => b.description)?.description;
    delete out.anyOf;
  }
  return out;
}

export class Compose {
  constructor(form, { onQueued, onError }) {
    this.form = form;
    this.onQueued = onQueued;
    this.onError = onError;
    this.schemas = {};  // family -> schema
    this.models = [];
    this.family = null;
    this.model = form.querySelector('#model');
    this.main = form.querySelector('#fields');
    this.adv = form.querySelector('#adv-fields');
    this.error = form.querySelector('#compose-error');
    this.submit = form.querySelector('#submit');
    this.model.addEventListener('change', () => this.build());
    form.addEventListener('submit', (e) => { e.preventDefault(); this.send(); });
  }

  /** Read the schemas from `openapi` and the models from the daemon, then build the form. */
  async init(openapi) {
    const schemas = openapi.components.schemas;
    for (const [family, name] of Object.entries(SCHEMA_OF)) if (schemas[name]) this.schemas[family] = schemas[name];
    try {
      this.models = (await get(`${API}/models`)).models;
    } catch (err) {
      this.models = [];
      this.onError(err);
    }
    const groups = {};
    // Models that make music from a prompt only: a separation model (stems) has no request schema here.
    this.models = this.models.filter((m) => !m.family || this.schemas[m.family]);
    for (const m of this.models) (groups[m.family] ||= []).push(m);
    this.model.replaceChildren(...Object.entries(groups).map(([family, ms]) => {
      const g = document.createElement('optgroup');
      g.label = ms[0].family_label || family;  // the registry's label (common/families.py), from /models
      for (const m of ms) {
        const o = new Option(m.configured ? `${m.name} (the daemon's)` : m.name + (m.cached ? '' : ' (downloads)'), m.name);
        o.dataset.family = m.family;
        o.dataset.configured = m.configured ? '1' : '';
        o.title = m.description || '';
        o.selected = !!m.configured;
        g.append(o);
      }
      return g;
    }));
    this.build();
  }

  selected() {
    const o = this.model.selectedOptions[0];
    return o ? { name: o.value, family: o.dataset.family, configured: !!o.dataset.configured } : null;
  }

  /** (Re)build the fields for the chosen model's family, keeping what was typed where it still applies. */
  build() {
    const m = this.selected();
    const family = m && this.schemas[m.family] ? m.family : Object.keys(this.schemas)[0];
    if (family === this.family) return;
    const typed = this.values(true);
    this.family = family;
    const schema = this.schemas[family];
    this.main.replaceChildren();
    this.adv.replaceChildren();
    const required = new Set(schema.required || []);
    for (const [name, raw] of Object.entries(schema.properties || {})) {
      if (SKIP.has(name)) continue;
      const field = this.field(name, unwrap(raw), required.has(name));
      (MAIN.includes(name) ? this.main : this.adv).append(field);
      const input = field.querySelector('[name]');
      if (typed[name] !== undefined) input.value = typed[name];
    }
    this.clearError();
  }

  field(name, s, required) {
    const wrap = document.createElement('label');
    wrap.className = 'field';
    wrap.dataset.field = name;
    const cap = document.createElement('span');
    cap.className = 'cap';
    cap.textContent = name.replace(/_/g, ' ') + (required ? ' *' : '');
    let input;
    if (Array.isArray(s.enum)) {
      input = document.createElement('select');
      const dflt = s.default !== undefined && s.default !== null ? ` (${s.default})` : '';
      input.append(new Option(`default${dflt}`, ''), ...s.enum.map((v) => new Option(String(v), String(v))));
      input.dataset.kind = s.enum.every((v) => typeof v === 'number') ? 'number' : 'string';
    } else if (s.type === 'integer' || s.type === 'number') {
      input = document.createElement('input');
      input.type = 'number';
      if (s.minimum !== undefined) input.min = String(s.minimum);
      if (s.maximum !== undefined) input.max = String(s.maximum);
      input.step = s.type === 'integer' ? '1' : 'any';
      input.dataset.kind = 'number';
      input.inputMode = s.type === 'integer' ? 'numeric' : 'decimal';
    } else if (s.type === 'boolean') {
      input = document.createElement('input');
      input.type = 'checkbox';
      input.dataset.kind = 'boolean';
    } else {
      const long = (s.maxLength || 0) >= 2000;
      input = document.createElement(long ? 'textarea' : 'input');
      if (long) input.rows = name === 'lyrics' ? 6 : 3;
      if (s.maxLength) input.maxLength = s.maxLength;
      input.dataset.kind = 'string';
    }
    input.name = name;
    input.id = `f-${name}`;
    if (s.default !== undefined && s.default !== null && s.default !== '' && input.type !== 'checkbox' && input.tagName !== 'SELECT') {
      input.placeholder = String(s.default);
    }
    const help = document.createElement('span');
    help.className = 'help small muted';
    const range = s.minimum !== undefined && s.maximum !== undefined ? ` (${s.minimum}–${s.maximum})` : '';
    help.textContent = (s.description || '') + range;
    const err = document.createElement('span');
    err.className = 'field-error';
    err.hidden = true;
    wrap.append(cap, input, help, err);
    return wrap;
  }

  /** The filled-in fields; `raw`: as typed (for rebuilding), else typed for the request. */
  values(raw = false) {
    const out = {};
    for (const input of this.form.querySelectorAll('#fields [name], #adv-fields [name]')) {
      if (input.dataset.kind === 'boolean') {
        if (input.checked) out[input.name] = raw ? 'on' : true;
        continue;
      }
      const v = input.value;
      if (v === '' || (input.dataset.kind !== 'string' && v.trim() === '')) continue;
      if (raw || input.dataset.kind === 'string') out[input.name] = v;
      else out[input.name] = Number.isFinite(Number(v)) ? Number(v) : v;  // the daemon names a bad number
    }
    return out;
  }

  clearError() {
    this.error.hidden = true;
    this.error.textContent = '';
    for (const f of this.form.querySelectorAll('.field.invalid')) {
      f.classList.remove('invalid');
      f.querySelector('[name]').removeAttribute('aria-invalid');
      const e = f.querySelector('.field-error');
      e.hidden = true;
      e.textContent = '';
    }
  }

  async send() {
    this.clearError();
    const body = this.values();
    const m = this.selected();
    if (m && !m.configured) body.model = m.name;  // none: the daemon's own model
    this.submit.disabled = true;
    try {
      const job = await call('POST', `${API}/jobs`, body);
      this.onQueued(job);
      this.error.hidden = false;
      this.error.className = 'ok';
      this.error.textContent = `queued as job #${job.id}`;
    } catch (err) {
      this.showError(err);
    } finally {
      this.submit.disabled = false;
    }
  }

  /** The daemon's message, next to the field it names (or under the form). */
  showError(err) {
    this.error.className = 'error';
    this.error.hidden = false;
    this.error.textContent = err.text || err.message;
    const wrap = err.field && this.form.querySelector(`.field[data-field="${CSS.escape(err.field)}"]`);
    if (wrap) {
      wrap.classList.add('invalid');
      const input = wrap.querySelector('[name]');
      input.setAttribute('aria-invalid', 'true');
      const e = wrap.querySelector('.field-error');
      e.textContent = err.message;
      e.hidden = false;
      if (wrap.closest('details')) wrap.closest('details').open = true;
      input.focus();
    }
    if (err.status === 401) this.onError(err);
  }
}
