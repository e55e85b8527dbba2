// The demo's stand-in for the Generate Image module: it asks the ClientAuthProvider for a token
// on startup, before expiry (background refresh) and after a simulated token error, shows the
// countdown and the refresh events, and proves the token works against the IMS emulator.

import { createClientAuthProvider } from "/assets/client-auth.js";

const body = document.body;
const broker = body.dataset.broker;
const emulator = body.dataset.emulator;
const params = new URLSearchParams(location.search);
const margin = Number(params.get("margin") ?? "60000");
const user = params.get("user") ?? "demo-user-1";
let signedIn = true;

const $ = (id) => document.getElementById(id);
const log = (text) => {
  const li = document.createElement("li");
  li.textContent = `${new Date().toISOString().slice(11, 19)} ${text}`;
  $("events").prepend(li);
};

const provider = createClientAuthProvider({
  endpoint: `${broker}/api/client-token`,
  // The partner backend mints a caller token for its signed-in user.
  getCallerCredential: async () => {
    if (!signedIn) return "Bearer signed-out";
    const r = await fetch(`/session/caller-token?user=${encodeURIComponent(user)}`, { method: "POST" });
    const { authorization } = await r.json();
    return authorization;
  },
  refreshMarginMs: margin,
  backgroundRefresh: true,
  onRefresh: ({ reason, details }) => {
    log(`token ${reason}: expires ${new Date(details.tokenExpiryTimestampMs).toISOString()}`);
    show(details);
  },
  onError: ({ error, willRetry }) => log(`error: ${error.message}${willRetry ? " (retrying)" : ""}`),
});

let current;
function show(details) {
  current = details;
  $("state").textContent = "ready";
  $("state").className = "ok";
  $("error").textContent = "";
  // The start of every JWT is the same header; its end (the signature) tells tokens apart.
  const t = details.clientAccessToken;
  $("token").textContent = `${t.slice(0, 8)}…${t.slice(-16)}`;
  $("guid").textContent = details.userGuid;
  $("expiry").textContent = String(details.tokenExpiryTimestampMs);
  checkWithIms(details);
}

// The module would call Adobe with the token; here the emulator's userinfo stands in.
async function checkWithIms(details) {
  try {
    const r = await fetch(`${emulator}/ims/userinfo/v2`, {
      headers: { Authorization: `Bearer ${details.clientAccessToken}` },
    });
    const v = await r.json();
    $("ims").textContent = r.ok ? `accepted (client ${v.client_id})` : `refused (${v.error})`;
  } catch (e) {
    $("ims").textContent = `unreachable (${e.message})`;
  }
}

async function moduleNeedsToken(why) {
  try {
    const details = await provider();
    if (details !== current) {
      show(details);
      log(`module got a new token (${why})`);
    }
  } catch (e) {
    $("state").textContent = "error";
    $("state").className = "err";
    $("error").textContent = e.message;
    log(`module could not get a token (${why}): ${e.kind}`);
  }
}

setInterval(() => {
  if (!current) return;
  const left = Math.max(0, current.tokenExpiryTimestampMs - Date.now());
  $("countdown").textContent = `${(left / 1000).toFixed(1)} s`;
}, 250);

$("token-error").addEventListener("click", () => {
  provider.invalidate();
  moduleNeedsToken("after a token error");
});
$("sign-out").addEventListener("click", () => {
  signedIn = false;
  provider.invalidate();
  moduleNeedsToken("after signing out");
});

moduleNeedsToken("startup");
// The module asks again from time to time, as the SDK does before each call; the provider answers
// from its cache until the token nears expiry.
setInterval(() => moduleNeedsToken("periodic"), 5_000);
