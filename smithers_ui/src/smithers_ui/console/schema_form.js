// A form generated from a workflow's inputSchema (JSON Schema, as pydantic writes it):
// string / number / integer / boolean / enum fields with their defaults, a JSON textarea for
// objects, arrays and anything else.

import { h, uid } from "./dom.js";

function resolver(root) {
  const defs = root.$defs || root.definitions || {};
  return function resolve(s, depth = 0) {
    if (!s || typeof s !== "object" || depth > 16) return s || {};
    if (typeof s.$ref === "string") {
      const name = s.$ref.split("/").pop();
      const target = defs[name];
      const { $ref, ...rest } = s;
      return resolve({ ...(target || {}), ...rest }, depth + 1);
    }
    if (Array.isArray(s.allOf) && s.allOf.length === 1) {
      const { allOf, ...rest } = s;
      return resolve({ ...resolve(allOf[0], depth + 1), ...rest }, depth + 1);
    }
    return s;
  };
}

/** `{kind, schema, nullable}`: how one property is edited. */
function kindOf(s, resolve) {
  s = resolve(s);
  const variants = s.anyOf || s.oneOf;
  if (Array.isArray(variants)) {
    const real = variants.map((v) => resolve(v)).filter((v) => v.type !== "null");
    const nullable = real.length < variants.length;
    if (real.length === 1) return { ...kindOf({ ...real[0], default: s.default }, resolve), nullable };
    return { kind: "json", schema: s, nullable };
  }
  if (Array.isArray(s.enum) && s.enum.length) return { kind: "enum", schema: s, nullable: false };
  if ("const" in s) return { kind: "enum", schema: { ...s, enum: [s.const] }, nullable: false };
  let type = s.type;
  let nullable = false;
  if (Array.isArray(type)) {
    nullable = type.includes("null");
    const real = type.filter((t) => t !== "null");
    type = real.length === 1 ? real[0] : null;
  }
  if (["string", "integer", "number", "boolean"].includes(type)) return { kind: type, schema: s, nullable };
  return { kind: "json", schema: s, nullable };
}

/**
 * Builds the fields; returns {element, read()} where read() returns the input object or
 * throws an Error after marking the fields in error.
 */
export function schemaForm(inputSchema) {
  const root = inputSchema && typeof inputSchema === "object" ? inputSchema : {};
  const resolve = resolver(root);
  const top = resolve(root);
  const props = top.type === "object" || top.properties ? top.properties || {} : null;
  const required = new Set(top.required || []);
  const fields = [];
  if (props && Object.keys(props).length) {
    for (const [name, prop] of Object.entries(props)) {
      fields.push(field(name, prop, required.has(name), resolve));
    }
  } else {
    fields.push(jsonField("input", "Input (JSON object)", top.description || "Any JSON object.", {}, true, true));
  }
  const element = h("div", { class: "schema-form" }, fields.map((f) => f.element));
  return {
    element,
    read() {
      let out = {};
      let failed = 0;
      for (const f of fields) {
        f.setError(null);
        try {
          const value = f.read();
          if (f.whole) out = value;
          else if (value !== undefined) out[f.name] = value;
        } catch (err) {
          failed += 1;
          f.setError(err.message);
        }
      }
      if (failed) {
        const first = element.querySelector("[aria-invalid=true]");
        if (first) first.focus();
        throw new Error(`${failed} field${failed > 1 ? "s need" : " needs"} fixing.`);
      }
      return out;
    },
  };
}

function wrap(name, label, hint, control, required, extra = {}) {
  const errId = uid("err");
  const hintId = hint ? uid("hint") : null;
  const error = h("div", { class: "field-error", id: errId, hidden: true });
  control.setAttribute("aria-describedby", [hintId, errId].filter(Boolean).join(" "));
  const labelEl = h("label", { for: control.id }, label, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null);
  const element = extra.inline
    ? h("div", { class: "field field-check" }, control, labelEl, hint ? h("div", { class: "hint", id: hintId }, hint) : null, error)
    : h("div", { class: "field" }, labelEl, hint ? h("div", { class: "hint", id: hintId }, hint) : null, control, error);
  return {
    name,
    element,
    setError(message) {
      error.hidden = !message;
      error.textContent = message || "";
      if (message) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    },
  };
}

function field(name, prop, required, resolve) {
  const { kind, schema, nullable } = kindOf(prop, resolve);
  const outer = resolve(prop);
  const label = outer.title || schema.title || name;
  const hint = outer.description || schema.description || null;
  const def = "default" in outer ? outer.default : schema.default;
  const id = uid(`in-${name}`.replace(/[^A-Za-z0-9_-]/g, "_"));
  if (kind === "boolean") {
    const input = h("input", { type: "checkbox", id, name, checked: def === true });
    const f = wrap(name, label, hint, input, false, { inline: true });
    f.read = () => input.checked;
    return f;
  }
  if (kind === "enum") {
    const values = schema.enum;
    const sel = h("select", { id, name, required: required || undefined });
    if (!required || def === undefined) sel.append(h("option", { value: "" }, required ? "Choose…" : "(default)"));
    const text = (v) => (v === null ? "null" : typeof v === "string" ? v : JSON.stringify(v));
    values.forEach((v) => sel.append(h("option", { value: text(v) }, text(v))));
    sel.value = values.some((v) => v === def) ? text(def) : "";
    const f = wrap(name, label, hint, sel, required);
    f.read = () => {
      if (sel.value === "") {
        if (required) throw new Error(`${label} is required.`);
        return undefined;
      }
      return values.find((v) => text(v) === sel.value);
    };
    return f;
  }
  if (kind === "string" || kind === "integer" || kind === "number") {
    const numeric = kind !== "string";
    const attrs = { id, name, type: numeric ? "number" : "text", required: required || undefined };
    if (kind === "integer") attrs.step = "1";
    if (kind === "number") attrs.step = "any";
    if (!numeric && schema.maxLength) attrs.maxlength = schema.maxLength;
    if (numeric && schema.minimum !== undefined) attrs.min = schema.minimum;
    if (numeric && schema.maximum !== undefined) attrs.max = schema.maximum;
    if (!numeric && schema.format === "password") attrs.type = "password";
    const input = h("input", attrs);
    if (def !== undefined && def !== null) input.value = String(def);
    if (nullable) input.placeholder = "(empty: null)";
    const f = wrap(name, label, hint, input, required);
    f.read = () => {
      const text = input.value;
      if (text === "") {
        if (required && !nullable) throw new Error(`${label} is required.`);
        if (nullable && def === null) return undefined;
        return nullable ? null : undefined;
      }
      if (!numeric) return text;
      const n = Number(text);
      if (!Number.isFinite(n)) throw new Error(`${label} must be a number.`);
      if (kind === "integer" && !Number.isInteger(n)) throw new Error(`${label} must be a whole number.`);
      return n;
    };
    return f;
  }
  return jsonField(name, label, hint, def === undefined ? skeleton(schema, resolve) : def, required, false);
}

/** A nested model without a default: its fields' defaults, as a starting point. */
function skeleton(schema, resolve) {
  const s = resolve(schema);
  if (!s || !s.properties) return undefined;
  const out = {};
  for (const [key, prop] of Object.entries(s.properties)) {
    const p = resolve(prop);
    if ("default" in p) out[key] = p.default;
  }
  return Object.keys(out).length ? out : undefined;
}

function jsonField(name, label, hint, def, required, whole) {
  const id = uid(`in-${name}`);
  const area = h("textarea", { id, name, rows: whole ? 6 : 4, class: "mono", spellcheck: "false" });
  if (def !== undefined) area.value = JSON.stringify(def, null, 2);
  const f = wrap(name, label, hint ? `${hint} (JSON)` : "JSON", area, required);
  f.whole = whole;
  f.read = () => {
    const text = area.value.trim();
    if (text === "") {
      if (whole) return {};
      if (required) throw new Error(`${label} is required.`);
      return undefined;
    }
    let value;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new Error(`${label}: invalid JSON (${err.message}).`);
    }
    if (whole && (value === null || typeof value !== "object" || Array.isArray(value))) {
      throw new Error("The input must be a JSON object.");
    }
    return value;
  };
  return f;
}
