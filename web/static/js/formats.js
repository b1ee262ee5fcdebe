// What a user can paste or open: a /score request body, a bare list of texts, a
// Neuronpedia feature export, or an SAEDashboard upload (several latents). Each becomes
// a list of datasets {title, activations, suggestion}; the caller lets the user choose.

function texts(list) {
  if (!Array.isArray(list)) return null;
  const out = [];
  for (const item of list) {
    if (!item || !Array.isArray(item.tokens) || !Array.isArray(item.values)) return null;
    out.push({ tokens: item.tokens.map(String), values: item.values.map(Number) });
  }
  return out.length ? out : null;
}

function explanationOf(data) {
  if (typeof data.explanation === "string" && data.explanation.trim()) return data.explanation;
  // Neuronpedia: explanations: [{description: "..."}]
  if (Array.isArray(data.explanations)) {
    const first = data.explanations.find((e) => e && typeof e.description === "string");
    if (first) return first.description;
  }
  return "";
}

export function parseDatasets(raw) {
  let data;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    throw new Error(`not JSON: ${err.message}`);
  }
  const bare = texts(data);
  if (bare) return [{ title: "pasted texts", activations: bare, suggestion: "" }];
  if (data && typeof data === "object") {
    const own = texts(data.activations);
    if (own) {
      const name = data.index !== undefined ? `latent ${data.index}` : "pasted texts";
      return [{ title: name, activations: own, suggestion: explanationOf(data) }];
    }
    if (Array.isArray(data.features)) {
      const found = [];
      data.features.forEach((feature, i) => {
        const acts = feature && texts(feature.activations);
        if (!acts) return;
        const index = feature.feature_index ?? feature.index ?? i;
        const silent = acts.every((a) => a.values.every((v) => v === 0));
        found.push({
          title: `latent ${index}${silent ? " (all zero)" : ""}`,
          activations: acts,
          suggestion: explanationOf(feature),
        });
      });
      if (found.length) return found;
    }
  }
  throw new Error("no texts found: expected {activations: [{tokens, values}]}, a list of them, or {features: [...]}");
}
