// The service's public routes, called the way any client would. The secret is typed
// by the user, sent as X-Secret-Key, and kept at most in this tab's sessionStorage.

const SECRET_KEY = "neuron-interp.secret";

export function getSecret() {
  return sessionStorage.getItem(SECRET_KEY) || "";
}

export function setSecret(value) {
  if (value) sessionStorage.setItem(SECRET_KEY, value);
  else sessionStorage.removeItem(SECRET_KEY);
}

export class ServiceError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const secret = getSecret();
  if (secret) headers["X-Secret-Key"] = secret;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    throw new ServiceError(0, "network_error", `the service did not answer (${err.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status}`;
    const code = data && typeof data.code === "string" ? data.code : "http_error";
    throw new ServiceError(response.status, code, message);
  }
  return data;
}

export const health = () => call("GET", "/health");
export const examples = () => call("GET", "/examples");
export const example = (id) => call("GET", `/examples/${encodeURIComponent(id)}`);
export const score = (body) => call("POST", "/score", body);
export const compare = (body) => call("POST", "/compare", body);
export const explain = (body) => call("POST", "/explain", body);
